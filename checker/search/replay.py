"""Replay that re-checks: does a saved counterexample still happen on this spec and design?

A saved step names its thread, kernel function and statement label, not an
action number, so a trace survives edits elsewhere in the design (actions
renumbered, other paths added). Each step is matched against the steps the
thread can take in the current state; the property is then re-evaluated on the
state reached (or on the step that fired into a violation):

- ``Reproduced``: the saved violation happens again (``apcheck replay`` exits 1);
- ``reproduced=False``: every step applies but the property no longer fails
  (exit 0, "no longer reproduces": the reviewer's fix works);
- ``ReplayRefused``: the trace belongs to another spec or design, or a step
  cannot be applied (exit 2, saying at which step and why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from checker.lang.program_types import Action, Program
from checker.report.results import Trace, TraceStep
from checker.search.progmodel import ProgramModel
from checker.search.run import replay_trace


class ReplayRefused(Exception):
    """The trace cannot be applied to this spec and design (the message says where and why)."""


@dataclass
class Recheck:
    reproduced: bool
    how: str  # what happened at the end, in words
    trace: Trace  # the replayed trace, rendered against the current design


def _match(program: Program, model: ProgramModel, state: int, k: int, step: TraceStep,
           threads: dict[str, int]) -> int:
    """The action id the saved step ``k`` (1-based) names in ``state``; ReplayRefused if none."""
    where = f"step {k} ({step.thread}: {step.function}, label {step.label!r})"
    if step.thread not in threads:
        raise ReplayRefused(f"{where}: this spec has no thread {step.thread!r}")
    t = threads[step.thread]
    th = program.threads[t]
    pc = th.pc.get(state)
    if pc >= len(th.labels):
        raise ReplayRefused(f"{where}: thread {step.thread!r} has already finished")
    here = th.labels[pc]
    if here != step.label:
        raise ReplayRefused(f"{where}: thread {step.thread!r} is at label {here!r} here, not {step.label!r}")
    acts: list[Action] = [a for a in program.by_label[t][pc] if a.function == step.function]
    if not acts:
        raise ReplayRefused(f"{where}: the step at label {here!r} is in "
                            f"{program.by_label[t][pc][0].function if program.by_label[t][pc] else '?'}, "
                            f"not {step.function}")
    enabled = {a for a, _ in model.successors(state)}
    live = [a for a in acts if a.aid in enabled]
    if len(live) > 1:  # a nondeterministic choice at one label: the statement text decides
        live = [a for a in live if a.text == step.action]
    if len(live) != 1:
        raise ReplayRefused(f"{where}: not enabled in this state" if not live
                            else f"{where}: ambiguous ({len(live)} enabled choices)")
    return live[0].aid


def recheck(program: Program, saved: Trace, prop: str, spec: str, design: str,
            model: ProgramModel | None = None) -> Recheck:
    """Apply ``saved`` step by step on ``program`` and re-evaluate property ``prop`` at its end."""
    if saved.design != design:
        raise ReplayRefused(f"the trace was produced by design {saved.design!r}, not {design!r}")
    if not _same_spec(saved.spec, spec):
        raise ReplayRefused(f"the trace was produced by spec {saved.spec!r}, not {spec!r}")
    if not saved.steps:
        raise ReplayRefused("the trace has no steps")
    model = model or ProgramModel(program)
    threads = {th.name: th.index for th in program.threads}
    s = model.init_states()[0]
    actions: list[int] = []
    fired = ""
    for k, step in enumerate(saved.steps, start=1):
        if fired:
            raise ReplayRefused(f"step {k}: the trace goes on after step {k - 1} fired a violation ({fired})")
        aid = _match(program, model, s, k, step, threads)
        actions.append(aid)
        n = next(n for a, n in model.successors(s) if a == aid)
        if n < 0:
            p, msg = model.violation(-1 - n)
            fired = f"{p}: {msg}"
            if p == prop:
                return Recheck(True, f"step {k} fires it again: {msg}", replay_trace(program, actions, model))
            continue
        s = n
    trace = replay_trace(program, actions, model)
    if fired:  # the last step fires another property's violation
        return Recheck(False, f"the last step now fires {fired}, not a {prop} violation", trace)
    failing = _failing_at_end(model, s, prop)
    if failing:
        return Recheck(True, failing, trace)
    return Recheck(False, f"all {len(saved.steps)} steps apply, and {prop} holds in the state they reach", trace)


def _same_spec(saved: str, spec: str) -> bool:
    """The same file (by path), or a copy of it under the same name (a report moved between checkouts)."""
    return os.path.basename(saved) == os.path.basename(spec) or os.path.realpath(saved) == os.path.realpath(spec)


def _failing_at_end(model: ProgramModel, s: int, prop: str) -> str:
    """Why ``prop`` fails in state ``s`` ("" if it does not)."""
    out = model.successors(s)
    for c in model.invariants():
        if c.name == prop and not c.pred(s):
            return "the invariant is false in the state the steps reach"
    for c in model.witnesses():
        if c.name == prop and c.pred(s):
            return "the state the steps reach satisfies the witness again"
    if prop in ("deadlock", "lock-order") and not out and not model.is_done(s):
        return "the steps end in a deadlock again: " + "; ".join(model.wait_lines(s))
    if prop == "memory-safety" and not out and model.is_done(s):
        leaked = model.leaked(s)
        if leaked:
            return "leak again: " + ", ".join(leaked) + " still alive when every thread finished"
    for name, fn in model.state_checks():
        if name == prop:
            msg = fn(s, out)
            if msg is not None:
                return msg
    return ""
