"""``apcheck prove --parametric SPEC|DESIGN``: invariants for any number of threads running any operations.

The design's hook ``universal_scenario(constants)`` gives every operation on every instance of
the constants (SPEC's, or the design's defaults) as a cyclic thread; ``checker.prove.parametric``
lifts that program to any number of copies of each thread and proves the goals by induction
over it. Goals not proved are looked for with BMC on the lifted relation (``--bmc``); a
counterexample is written out as a spec of its concrete size and replayed by the explicit
engine before it is reported VIOLATED. Before a PROVED, the lifted relation instantiated at one
copy of each thread is checked against the explicit successor function (``--crosscheck-states``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import click

from checker.lang.design import Design
from checker.lang.program import Program
from checker.prove.parametric.instance import InstanceMismatch, check_instance
from checker.prove.parametric.pprove import BmcInconclusive, Invariant, ParametricProver
from checker.prove.parametric.refute import replay, spec_text
from checker.prove.prove_results import PROVED, VIOLATED, ProveResult

DEFAULT_CROSSCHECK_STATES = 60  # a few seconds per 500 actions; the instance test covers whole spaces


def scope_text(program: Program, constants: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in constants.items() if k in ("vms", "vcpus", "mdevs", "adapters", "domains"))
    return ("all thread counts: any number of threads, each running any sequence of the operations any number "
            f"of times, an fd closed once ({len(program.threads)} operation instances; {shown}); "
            "runs up to the first failing check")  # the check: groups are not proved parametrically


@dataclass
class Target:
    design: Design
    constants: dict[str, Any]
    operations: tuple[str, ...]  # empty: every operation of the design
    lemmas: tuple[str, ...]  # the spec's prove: lemmas
    shown: str


def resolve(ctx: click.Context, target: str) -> Target:
    """A SPEC (its constants, the operations its threads run, its lemmas) or a DESIGN (its defaults,
    every operation)."""
    from checker.cli.cli import get_app, load

    if os.path.exists(target):
        loaded = load(ctx, target)
        block = getattr(loaded, "prove", None)
        lemmas = tuple(block.get("lemmas", ())) if isinstance(block, dict) else ()
        ops = tuple(dict.fromkeys(c.name for t in loaded.scenario.threads for c in t.run))
        return Target(loaded.design, dict(loaded.scenario.constants), ops, lemmas, target)
    design = get_app(ctx).registry().get(target)  # an unknown name: "unknown design ..." (exit 2)
    return Target(design, {}, (), (), f"all operations of {target}")


def run_parametric(ctx: click.Context, target: str, props: tuple[str, ...], lemmas: tuple[str, ...],
                   timeout: float, bmc: int, auto_lemmas: bool, crosscheck_states: int | None, fmt: str,
                   output: str | None, cex_dir: str, no_lemmas: bool = False) -> int:
    from checker.cli.cli import write_report
    from checker.cli.prove_cli import render_text, result_to_dict
    from checker.report.report_text import render_trace
    from checker.search.run import replay_trace

    tg = resolve(ctx, target)
    design, spec_lemmas, shown = tg.design, () if no_lemmas else tg.lemmas, tg.shown
    make = getattr(design, "universal_scenario", None)
    if make is None:
        raise click.UsageError(f"design {design.name} has no universal_scenario hook: --parametric needs one")
    scenario = make(tg.constants, tg.operations)
    program = design.build(scenario)
    always = {p.name: p.expr for p in program.properties if p.kind == "always"}
    extra = tuple(n for n in getattr(design, "universal_lemmas", tuple)() if n in always and not no_lemmas)
    all_lemmas = tuple(dict.fromkeys(spec_lemmas + lemmas + extra))
    for name in (*props, *all_lemmas):
        if name not in always:
            raise click.UsageError(f"unknown always property {name!r}; known: {', '.join(always)}")
    goals = list(props) or list(always)
    t0 = time.monotonic()
    once_ops = set(getattr(design, "universal_once", tuple)())  # one thread of these kinds (closing an fd)
    once = [i for i, t in enumerate(scenario.threads) if any(c.name in once_ops for c in t.run)]
    prover = ParametricProver(program, timeout, scope_text(program, dict(scenario.constants)), once)
    rows = prover.prove([Invariant(g, always[g]) for g in goals], [Invariant(n, always[n]) for n in all_lemmas],
                        auto_lemmas=auto_lemmas, budget_s=max(timeout, 10 * timeout))
    swimlanes: list[str] = []
    for row in rows:
        if row.status == PROVED or bmc <= 0 or row.kind != "always":
            continue
        try:
            trace = prover.bmc(Invariant(row.property, always[row.property]), bmc)
        except BmcInconclusive as e:
            row.detail += f"; {e}"
            continue
        if trace is None:
            row.detail += f"; BMC: no violation up to depth {bmc} for any number of threads"
            row.bmc_depth = bmc
            continue
        got = replay(design, scenario, program, trace, row.property)
        path = os.path.join(cex_dir, f"parametric-{design.name}-{row.property}.yaml")
        os.makedirs(cex_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(spec_text(got.scenario, row.property, f"{len(trace.steps)} steps"))
        row.status, row.bmc_depth, row.scope = VIOLATED, len(trace.steps), ""
        row.detail = (f"violated in {len(trace.steps)} steps with {got.threads} thread(s); replayed by the explicit "
                      f"engine; written to {path} (apcheck check {path})")
        swimlanes.append(render_trace(replay_trace(got.program, got.actions), title=f"{row.property}: {row.detail}"))
    result = ProveResult(design.name, rows, seconds=time.monotonic() - t0)
    states = DEFAULT_CROSSCHECK_STATES if crosscheck_states is None else crosscheck_states
    if any(r.status == PROVED for r in rows) and states > 0:
        try:
            rep = check_instance(design, scenario, program, [1] * len(program.threads), states, states // 3)
        except InstanceMismatch as e:
            raise RuntimeError(f"Z3 and the explicit engine disagree on the parametric relation: {e} "
                               "(please report)") from None
        result.crosscheck = ("lifted relation at one thread per operation instance agrees exactly with the explicit "
                             f"successor function {rep.text()}")
    if fmt == "json":
        text = json.dumps(result_to_dict(program, result, shown, design.name), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_text(program, result, shown, design.name).rstrip("\n") + "\n"
        text += "".join("\n" + s.rstrip("\n") + "\n" for s in swimlanes)
    write_report(text, output)
    return result.exit_code()


__all__ = ["run_parametric", "scope_text"]
