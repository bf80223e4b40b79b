"""A lifted counterexample as a spec of a concrete size, replayed by the explicit engine.

The lifted BMC trace names, per step, an action template and a thread (numbered in order of
first step). The spec keeps the kinds the trace uses, each repeated as many times as the trace
has threads of that kind (``copies_scenario``); the design builds its program as for any spec,
and the compiled successor function must take every step of the trace, ending in a state that
violates the goal. Anything else is an ``InstanceMismatch`` (an apcheck bug).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from checker.lang.design import Design, Scenario
from checker.lang.program import Program
from checker.prove.parametric.instance import InstanceMismatch, copies_scenario, copy_name
from checker.prove.parametric.pprove import LiftedTrace


@dataclasses.dataclass
class Replayed:
    scenario: Scenario
    program: Program
    actions: list[int]  # the trace as action ids of ``program``
    threads: int


def cex_scenario(scenario: Scenario, small: Program, trace: LiftedTrace) -> tuple[Scenario, dict[int, int]]:
    """The spec's scenario at the trace's size, restricted to the kinds it uses; and each trace
    thread's index in that scenario."""
    copies = [0] * len(small.threads)
    for n in sorted(trace.kinds):
        copies[trace.kinds[n]] += 1
    sized = copies_scenario(scenario, copies)
    names = [t.name for t in sized.threads]
    seen = [0] * len(small.threads)
    where: dict[int, int] = {}
    for n in sorted(trace.kinds):
        k = trace.kinds[n]
        where[n] = names.index(copy_name(small.threads[k].name, seen[k]))
        seen[k] += 1
    return dataclasses.replace(sized, name="parametric-counterexample"), where


def replay(design: Design, scenario: Scenario, small: Program, trace: LiftedTrace, goal: str) -> Replayed:
    """Build the trace's size and step through it with the explicit engine's successor function."""
    from checker.search.codegen import compile_program
    from checker.search.pycompile import evaluate

    sized, where = cex_scenario(scenario, small, trace)
    big = design.build(sized)
    succ = compile_program(big).succ
    per_thread: dict[int, list[int]] = {}
    for a in big.actions:
        per_thread.setdefault(a.thread, []).append(a.aid)
    tmpl_index: dict[int, int] = {}  # template action -> its index among its thread's actions
    for t in range(len(small.threads)):
        for i, a in enumerate(x for x in small.actions if x.thread == t):
            tmpl_index[a.aid] = i
    state = big.layout.initial()
    actions: list[int] = []
    for step, (aid, n) in enumerate(trace.steps, 1):
        bt = where[n]
        big_aid = per_thread[bt][tmpl_index[aid]]
        nxt = [ns for a, ns in succ(state) if a == big_aid]
        if not nxt or nxt[0] < 0:
            a = big.actions[big_aid]
            raise InstanceMismatch(f"step {step} of the lifted counterexample ({big.threads[bt].name}: "
                                   f"{a.function}: {a.text}) is not a transition of the explicit engine")
        state = nxt[0]
        actions.append(big_aid)
    decoded = big.layout.decode(state)
    expr = next(p.expr for p in big.properties if p.name == goal)  # the sized program's own fields
    if evaluate(expr, {f: decoded[f.name] for f in big.layout.fields}):
        raise InstanceMismatch("the explicit engine's state after the lifted counterexample satisfies the goal")
    return Replayed(sized, big, actions, len(sized.threads))


EXPLICIT_STATES = 1_000_000  # the explicit engine's share of a refutation: about a second natively


def explicit_counterexample(program: Program, goal: str, max_states: int = EXPLICIT_STATES) -> LiftedTrace | None:
    """The shortest violation of ``goal`` in ``program`` itself, one thread per operation instance (a size
    the lifted relation covers: the cross-check's instance), by the explicit engine's breadth-first search
    with no reduction, within ``max_states``; as a lifted trace (thread n + 1 runs kind n). None: no
    violation found there (the lifted BMC may still find one with more copies)."""
    from checker.search.run import check_program
    from checker.spec.options import Options

    res = check_program(program, Options(quiet=True, reduction="none", max_states=max_states, properties=(goal,)))
    found = next((p for p in res.properties if p.name == goal and p.status == "VIOLATED" and p.trace), None)
    if found is None or found.trace is None:
        return None
    steps = [(aid, program.actions[aid].thread + 1) for aid in found.trace.actions]
    return LiftedTrace(steps, {n: n - 1 for _, n in steps})


def spec_text(scenario: Scenario, goal: str, how: str) -> str:
    """The counterexample's scenario as a spec ``apcheck check`` runs."""
    doc: dict[str, Any] = {
        "name": scenario.name,
        "design": scenario.design,
        "description": f"{goal}: counterexample found by apcheck prove --parametric ({how})",
        "constants": {k: v for k, v in scenario.constants.items() if v is not None},  # None: the default
        "threads": [{"name": t.name, **({"cyclic": True} if t.cyclic else {}),
                     "run": [{c.name: dict(c.args)} if c.args else c.name for c in t.run]} for t in scenario.threads],
        "properties": {"only": [goal]},
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)


__all__ = ["EXPLICIT_STATES", "Replayed", "cex_scenario", "explicit_counterexample", "replay", "spec_text"]
