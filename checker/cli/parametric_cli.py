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

from checker.lang.design import Design, Scenario, ScenarioError
from checker.lang.program import Program
from checker.prove.goals import CHECK_PREFIX, check_invariant
from checker.prove.parametric.instance import InstanceMismatch, InstanceReport, check_instance
from checker.prove.parametric.pprove import BmcInconclusive, Invariant, ParametricProver
from checker.prove.parametric.refute import explicit_counterexample, replay, spec_text
from checker.prove.parametric.sizes import DIMENSIONS, SizeOutcome, SizesError, combine, parse_sizes
from checker.prove.prove import UP_TO_FAILING_CHECK, every_check_proved
from checker.prove.prove_results import PROVED, VIOLATED, PropertyProof, ProveResult

DEFAULT_CROSSCHECK_STATES = 60  # a few seconds per 500 actions; the instance test covers whole spaces


def scope_text(program: Program, constants: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in constants.items() if k in ("vms", "vcpus", "mdevs", "adapters", "domains"))
    return ("all thread counts: any number of threads, each running any sequence of the operations any number "
            f"of times, an fd closed once, an mdev removed once ({len(program.threads)} operation instances; "
            f"{shown}); runs up to the first failing check")  # dropped when every check group is PROVED too


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


@dataclass
class Proof:
    """One universal scenario proved: its rows, the swimlanes of its refutations, what was cross-checked,
    and the counterexample specs written (goal -> path)."""

    program: Program
    rows: list[PropertyProof]
    swimlanes: list[str]
    crosscheck: str
    written: dict[str, str]
    checked: InstanceReport | None  # the cross-check (None: no PROVED row, or --crosscheck-states 0)


def prove_scenario(design: Design, scenario: Scenario, program: Program, goals: list[str], lemmas: tuple[str, ...],
                   timeout: float, bmc: int, auto_lemmas: bool, states: int, cex_dir: str, scope: str,
                   suffix: str = "", no_bmc: frozenset[str] = frozenset()) -> Proof:
    """Lift ``program`` (the design's build of ``scenario``), prove ``goals`` with ``lemmas`` for any number of
    threads, look for counterexamples of those not proved with BMC (except ``no_bmc``), and cross-check the
    lifted relation against the explicit engine before any PROVED."""
    from checker.report.report_text import render_trace
    from checker.search.run import replay_trace

    always = {p.name: p.expr for p in program.properties if p.kind == "always"}
    checks = {g: check_invariant(program, g.removeprefix(CHECK_PREFIX)) for g in goals if g.startswith(CHECK_PREFIX)}
    once_ops = set(getattr(design, "universal_once", tuple)())  # one thread of these kinds (closing an fd)
    once = [i for i, t in enumerate(scenario.threads) if any(c.name in once_ops for c in t.run)]
    prover = ParametricProver(program, timeout, scope, once)
    rows = prover.prove([Invariant(g, checks[g] if g in checks else always[g]) for g in goals],
                        [Invariant(n, always[n]) for n in lemmas], auto_lemmas=auto_lemmas,
                        budget_s=max(timeout, 10 * timeout), conditional_holds=bool(checks))
    for row in rows:
        if row.property in checks:
            row.kind = "check"  # no BMC below: a check's counterexample is a step, the explicit search's job
    _drop_check_caveat(program, rows)
    swimlanes: list[str] = []
    written: dict[str, str] = {}
    for row in rows:
        if row.status == PROVED or bmc <= 0 or row.kind != "always":
            continue
        if row.property in no_bmc:
            row.detail += "; no BMC here: VIOLATED at an earlier size"
            continue
        how = "the explicit engine, one thread per operation instance"
        trace = explicit_counterexample(program, row.property)
        if trace is None or len(trace.steps) > bmc:
            how = "BMC on the lifted relation"
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
        path = os.path.join(cex_dir, f"parametric-{design.name}-{row.property}{suffix}.yaml")
        os.makedirs(cex_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(spec_text(got.scenario, row.property, f"{len(trace.steps)} steps"))
        written[row.property] = path
        row.status, row.bmc_depth, row.scope = VIOLATED, len(trace.steps), ""
        row.detail = (f"violated in {len(trace.steps)} steps with {got.threads} thread(s) (found by {how}); replayed "
                      f"by the explicit engine; written to {path} (apcheck check {path})")
        swimlanes.append(render_trace(replay_trace(got.program, got.actions), title=f"{row.property}: {row.detail}"))
    crosscheck, rep = "", None
    if any(r.status == PROVED for r in rows) and states > 0:
        try:
            rep = check_instance(design, scenario, program, [1] * len(program.threads), states, states // 3)
        except InstanceMismatch as e:
            raise RuntimeError(f"Z3 and the explicit engine disagree on the parametric relation: {e} "
                               "(please report)") from None
        crosscheck = ("lifted relation at one thread per operation instance agrees exactly with the explicit "
                      f"successor function {rep.text()}")
    return Proof(program, rows, swimlanes, crosscheck, written, rep)


def _drop_check_caveat(program: Program, rows: list[PropertyProof]) -> None:
    """Every check group PROVED in the same run: the PROVED rows cover whole runs, not only up to the first
    failing check (the rule ``checker.prove.prove.set_scopes`` applies to one scenario)."""
    if any(a.checks for a in program.actions) and every_check_proved(program, rows):
        for r in rows:
            r.scope = r.scope.replace(f"; {UP_TO_FAILING_CHECK}", "")


def _lemmas_and_goals(design: Design, program: Program, spec_lemmas: tuple[str, ...], lemmas: tuple[str, ...],
                      props: tuple[str, ...], no_lemmas: bool) -> tuple[tuple[str, ...], list[str]]:
    """The lemmas (the spec's, --lemma, the design's universal_lemmas) and goals of ``program``; an unknown
    name is a usage error. A goal may also be a check group, ``check:KIND`` (opt-in: not a default goal)."""
    always = [p.name for p in program.properties if p.kind == "always"]
    checks = sorted({CHECK_PREFIX + c.prop for a in program.actions for c in a.checks})
    extra = tuple(n for n in getattr(design, "universal_lemmas", tuple)() if n in always and not no_lemmas)
    all_lemmas = tuple(dict.fromkeys(spec_lemmas + lemmas + extra))
    for name in (*props, *all_lemmas):
        if name not in always and not (name in props and name in checks):
            raise click.UsageError(f"unknown always property {name!r}; known: {', '.join(always)}; check groups "
                                   f"(as --property): {', '.join(checks)}")
    return all_lemmas, list(props) or always


def run_parametric(ctx: click.Context, target: str, props: tuple[str, ...], lemmas: tuple[str, ...],
                   timeout: float, bmc: int, auto_lemmas: bool, crosscheck_states: int | None, fmt: str,
                   output: str | None, cex_dir: str, no_lemmas: bool = False, sizes: str | None = None) -> int:
    tg = resolve(ctx, target)
    design, spec_lemmas, shown = tg.design, () if no_lemmas else tg.lemmas, tg.shown
    make = getattr(design, "universal_scenario", None)
    if make is None:
        raise click.UsageError(f"design {design.name} has no universal_scenario hook: --parametric needs one")
    states = DEFAULT_CROSSCHECK_STATES if crosscheck_states is None else crosscheck_states
    if sizes is not None:
        return run_sizes(tg, sizes, props, lemmas, timeout, bmc, auto_lemmas, states, fmt, output, cex_dir,
                         no_lemmas)
    scenario = make(tg.constants, tg.operations)
    program = design.build(scenario)
    all_lemmas, goals = _lemmas_and_goals(design, program, spec_lemmas, lemmas, props, no_lemmas)
    t0 = time.monotonic()
    proof = prove_scenario(design, scenario, program, goals, all_lemmas, timeout, bmc, auto_lemmas, states, cex_dir,
                           scope_text(program, dict(scenario.constants)))
    result = ProveResult(design.name, proof.rows, seconds=time.monotonic() - t0, crosscheck=proof.crosscheck)
    return _report(program, result, shown, design.name, proof.swimlanes, fmt, output)


def _report(program: Program, result: ProveResult, shown: str, design: str, swimlanes: list[str], fmt: str,
            output: str | None, json_extra: dict[str, Any] | None = None, text_extra: str = "",
            json_shown: str | None = None) -> int:
    """Write the prove report (text: the table, ``text_extra``, then the refutations' swimlanes; JSON: the
    prove document with ``json_extra``'s keys) and return its exit code."""
    from checker.cli.cli import write_report
    from checker.cli.prove_cli import render_text, result_to_dict

    if fmt == "json":
        doc = {**result_to_dict(program, result, shown if json_shown is None else json_shown, design),
               **(json_extra or {})}
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_text(program, result, shown, design).rstrip("\n") + "\n" + text_extra
        text += "".join("\n" + s.rstrip("\n") + "\n" for s in swimlanes)
    write_report(text, output)
    return result.exit_code()


def run_sizes(tg: Target, sizes: str, props: tuple[str, ...], lemmas: tuple[str, ...], timeout: float, bmc: int,
              auto_lemmas: bool, states: int, fmt: str, output: str | None, cex_dir: str, no_lemmas: bool) -> int:
    """``--sizes``: the target's operations (plus the design's sized operations) on every size of the grid,
    each proved for any number of threads; one row per goal for the grid (checker.prove.parametric.sizes)."""
    design = tg.design
    try:
        grid = parse_sizes(sizes)
    except SizesError as e:
        raise click.UsageError(f"--sizes: {e}") from None
    hook, make = getattr(design, "sized_constants", None), getattr(design, "universal_scenario", None)
    if hook is None or make is None:
        raise click.UsageError(f"design {design.name} has no sized_constants hook: --sizes needs one")
    plans = []  # every size built and its names checked before any proof: a usage error comes first
    goals: list[str] = list(props)
    for size in grid.sizes():
        constants, sized_ops, instances = hook(size.vms, size.adapters, size.domains)
        ops = tuple(dict.fromkeys(tg.operations + tuple(sized_ops))) if tg.operations else ()
        try:
            scenario = make(constants, ops)
            program = design.build(scenario)
        except ScenarioError as e:
            raise click.UsageError(f"--sizes: size {size.label()}: design {design.name} does not model it "
                                   f"({e.key}: {e.message})") from None
        all_lemmas, size_goals = _lemmas_and_goals(design, program, () if no_lemmas else tg.lemmas, lemmas,
                                                   tuple(goals), no_lemmas)
        goals = goals or size_goals
        covered = getattr(design, "sized_coverage", lambda sc, p: (False, "matrices reached: not checked"))
        plans.append((size, scenario, program, all_lemmas, covered(scenario, program)))
    ran = tuple(dict.fromkeys(c.name for t in plans[0][1].threads for c in t.run))
    matrices = next((f"{why} at size {size.label()}" for size, *_, (ok, why) in plans if not ok), plans[0][4][1])
    scope = (f"all thread counts; every size with {grid.text()}: any number of threads, each running any sequence "
             "of the operations any number of times, an fd closed once, an mdev removed once (operations "
             f"{', '.join(ran)} on every instance of each size; {instances}; {matrices}); runs up to the first "
             "failing check")
    t0 = time.monotonic()
    outcomes: list[SizeOutcome] = []
    swimlanes: list[str] = []
    checked: list[InstanceReport] = []
    violated: set[str] = set()
    for size, scenario, program, all_lemmas, (_, coverage) in plans:
        t1 = time.monotonic()
        proof = prove_scenario(design, scenario, program, goals, all_lemmas, timeout, bmc, auto_lemmas, states,
                               cex_dir, scope_text(program, dict(scenario.constants)), f"-{size.key()}",
                               frozenset(violated))
        violated |= {r.property for r in proof.rows if r.status == VIOLATED}
        outcomes.append(SizeOutcome(size, proof.rows, len(program.threads), time.monotonic() - t1,
                                    proof.crosscheck, proof.written, coverage))
        swimlanes += [f"at size {size.label()}: {x}" for x in proof.swimlanes]
        checked += [proof.checked] if proof.checked else []
    rows = combine(grid, outcomes, scope)
    result = ProveResult(design.name, rows, seconds=time.monotonic() - t0)
    if checked:
        result.crosscheck = (f"at {len(checked)} of the {_count(len(outcomes), 'size')} (those with a PROVED goal), "
                             "the lifted relation at one thread per operation instance agrees exactly with the "
                             f"explicit successor function ({sum(c.states for c in checked):,} states, "
                             f"{sum(c.transitions for c in checked):,} transitions in all)")
    grid_json = {"grid": {**{d: list(r) for d, r in zip(DIMENSIONS, grid.ranges)}, "count": len(outcomes),
                          "text": grid.text()},
                 "scope": scope, "sizes": [o.to_json() for o in outcomes]}
    sizes_text = f"\nsizes: {grid.text()}\n" + "".join(f"  {o.summary()}\n" for o in outcomes)
    return _report(plans[0][2], result, f"{tg.shown} --sizes {sizes}", design.name, swimlanes, fmt, output,
                   grid_json, sizes_text, json_shown=tg.shown)  # JSON: the target as its spec, the grid its own key


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


__all__ = ["Proof", "prove_scenario", "run_parametric", "run_sizes", "scope_text"]
