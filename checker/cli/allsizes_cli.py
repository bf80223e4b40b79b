"""``apcheck prove --parametric --all-sizes SPEC``: the goals for any number of guests and threads.

The design builds its universal scenario at three guests (``sized_constants``: kvm k with mdev k attached;
the spec's operations and the sized ones, on every guest), and ``PoolLifting`` reads that program over the
guest pool as a sort of any size (checker.prove.parametric.poollift). The goals are proved by induction on
that relation with the spec's lemmas and the design's ``pool_lemmas``. Before any PROVED, the lifting at
three guests is compared with the explicit successor function (checker.prove.parametric.poolinstance), and
at four guests with the program the design builds at four (checker.prove.parametric.poolsizes: the builder
uniform in the guests). A step the lifting cannot read over the pool is an UNKNOWN row naming it, never a
guess.
"""

from __future__ import annotations

import time
from typing import Any

import click

from checker.cli.parametric_cli import Target, _lemmas_and_goals, _report
from checker.lang.design import ScenarioError
from checker.lang.program_types import Program
from checker.prove.parametric.instance import InstanceMismatch
from checker.prove.parametric.lift import LiftError
from checker.prove.parametric.poolinstance import check_pool_instance
from checker.prove.parametric.poollift import PoolLifting
from checker.prove.parametric.poolsizes import Sized, check_pool_size
from checker.prove.parametric.pprove import Invariant, ParametricProver
from checker.prove.prove_results import PROVED, UNKNOWN, PropertyProof, ProveResult

POOL = "guest"
BUILT_GUESTS = 3  # the fewest members at which a loop over "every other guest" shows as a loop
OTHER_GUESTS = 4  # the size the lifting is also compared at, with the program built there
HOOKS = ("sized_constants", "universal_scenario", "instance_owners", "instance_orbits")


def run_all_sizes(tg: Target, props: tuple[str, ...], lemmas: tuple[str, ...], timeout: float, auto_lemmas: bool,
                  states: int, fmt: str, output: str | None, no_lemmas: bool, adapters: int = 2,
                  domains: int = 1) -> int:
    design = tg.design
    missing = [h for h in HOOKS if not hasattr(design, h)]
    if missing:
        raise click.UsageError(f"design {design.name} has no {', '.join(missing)} hook: --all-sizes needs them")
    d: Any = design
    try:
        constants, scenario, program = _universal(d, BUILT_GUESTS, tg.operations, adapters, domains)
    except ScenarioError as e:
        raise click.UsageError(f"--all-sizes: design {design.name} does not model {BUILT_GUESTS} guests "
                               f"({e.key}: {e.message})") from None
    # the design's lemmas for a pool (its parametric ones, a count over every mdev restated guest by guest);
    # the properties it cannot state over the pool are no default goal
    pool_lemmas = tuple(getattr(d, "pool_lemmas", tuple)()) if not no_lemmas else ()
    unstated = set(getattr(d, "pool_unstated", tuple)())
    always = {p.name: p.expr for p in program.properties if p.kind == "always"}
    all_lemmas, goals = _lemmas_and_goals(design, program, () if no_lemmas else tg.lemmas,
                                          lemmas + tuple(x for x in pool_lemmas if x in always), props, True)
    if not props:
        goals = [g for g in goals if g not in unstated]
    once_ops = set(getattr(d, "universal_once", tuple)())
    once = [i for i, t in enumerate(scenario.threads) if any(c.name in once_ops for c in t.run)]
    owners, orbits = d.instance_owners(scenario), d.instance_orbits(scenario)
    ran = ", ".join(dict.fromkeys(c.name for t in scenario.threads for c in t.run))
    once_text = ", a once-only operation (closing an fd, removing the mdev) at most once per guest" if once else ""
    scope = (f"all sizes: any number of guests (a VM with its mdev attached, one vCPU each) and of threads, each "
             f"running any sequence of the operations any number of times on any guest{once_text} (operations "
             f"{ran}; adapters {constants['adapters']}, domains {constants['domains']}, every queue bound to vfio_ap "
             "at start); runs up to the first failing check")
    t0 = time.monotonic()
    try:
        lift = PoolLifting(program, POOL, owners, once, orbits=orbits)
        lift.check_liftable()
    except LiftError as e:
        rows = [PropertyProof(g, "always", UNKNOWN, f"not liftable over any number of guests: {e}", 1, 0)
                for g in goals]
        return _report(program, ProveResult(design.name, rows, seconds=time.monotonic() - t0), tg.shown,
                       design.name, [], fmt, output, {"all_sizes": {"pool": POOL, "scope": scope}})
    prover = ParametricProver(program, timeout, scope, once, lift=lift)
    # which kvm->lock a store holds is chosen by a pointer: over the guests auto:lock-ownership needs those facts
    # (heldsets.held_when) even for the always properties (without them the solver answered unknown, 90 s)
    rows = prover.prove([Invariant(g, always[g]) for g in goals], [Invariant(n, always[n]) for n in all_lemmas],
                        auto_lemmas=auto_lemmas, budget_s=max(timeout, 20 * timeout), conditional_holds=True)
    for r in rows:
        r.detail = r.detail.replace("for every number of threads", "for every number of guests and threads")
    crosscheck = ""
    if any(r.status == PROVED for r in rows) and states > 0:
        try:
            rep = check_pool_instance(program, POOL, owners, states, states // 3)
        except InstanceMismatch as e:
            raise RuntimeError(f"Z3 and the explicit engine disagree on the lifting over the guests: {e} "
                               "(please report)") from None
        crosscheck = (f"the lifting over the guests at {BUILT_GUESTS} guests agrees exactly with the explicit "
                      f"successor function {rep.text()}")
        crosscheck += "; " + _other_size(d, Sized(program, owners, orbits), tg.operations, once, adapters, domains,
                                         states)
    result = ProveResult(design.name, rows, seconds=time.monotonic() - t0, crosscheck=crosscheck)
    return _report(program, result, f"{tg.shown} --all-sizes", design.name, [], fmt, output,
                   {"all_sizes": {"pool": POOL, "built_with": BUILT_GUESTS, "scope": scope}}, json_shown=tg.shown)


def _universal(d: Any, guests: int, operations: tuple[str, ...], adapters: int,
               domains: int) -> tuple[dict[str, Any], Any, Program]:
    """(constants, scenario, program) of the universal scenario at ``guests`` guests: the spec's operations and
    the sized ones (every operation where the spec names none); ``ScenarioError`` where the design cannot."""
    constants, sized_ops, _ = d.sized_constants(guests, adapters, domains)
    ops = tuple(dict.fromkeys(operations + tuple(sized_ops))) if operations else ()
    scenario = d.universal_scenario(constants, ops)
    return constants, scenario, d.build(scenario)


def _other_size(d: Any, built: Sized, operations: tuple[str, ...], once: list[int], adapters: int, domains: int,
                states: int) -> str:
    """The lifting (of the program built at three guests) at four guests against the program built at four."""
    try:
        _, scenario, program = _universal(d, OTHER_GUESTS, operations, adapters, domains)
    except ScenarioError as e:
        return f"not compared at {OTHER_GUESTS} guests: the design does not model them ({e.key}: {e.message})"
    other = Sized(program, d.instance_owners(scenario), d.instance_orbits(scenario))
    try:
        rep = check_pool_size(built, other, POOL, once, states, states // 3)
    except InstanceMismatch as e:
        raise RuntimeError(f"the lifting over the guests at {OTHER_GUESTS} guests differs from the program the design "
                           f"builds there: {e} (please report)") from None
    return (f"at {OTHER_GUESTS} guests it agrees exactly with the program the design builds there {rep.text()}")


__all__ = ["run_all_sizes"]
