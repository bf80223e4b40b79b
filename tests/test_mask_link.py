"""What links the full-width mask proofs (docs/mask-proofs.md) to the designs: the designs' own steps.

The mask proofs show that the rules of ``ap_model/rules.py`` keep "no APQN assigned to two mdevs" (P2)
and "no assigned APQN reserved for the default drivers" (P1, P1b) for every mask value at 256 bits.
The designs build their mask-writing steps from those rules. Here the same one-step obligations are
proved on the compiled steps themselves: every step of a design that writes ``ap_perms`` or an mdev's
matrix, taken from ANY state satisfying the invariants (reachable or not), keeps them -- so a design
that wrote a mask behind the rules' back, or split a check from its commit, fails here. The
invariants are the design's own properties (``no-double-assignment``; ``lemma-assigned-not-reserved``
where the design states it: the dynamic designs with a guests_lock mutex).
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import z3

from checker.lang.expr import Expr, MaskConst
from checker.lang.program import Action, Program
from checker.prove.symbolic import encode
from checker.spec.registry import default_registry

P2 = "no-double-assignment"
P1 = "lemma-assigned-not-reserved"
CONSTANTS = {"vms": 2, "mdevs": 3}  # P2 with 3 mdevs, as the mask proofs' P2[3 mdevs]


def _writes_masks(a: Action) -> bool:
    return any(f.name.startswith("ap_perms.") or ".matrix.a" in f.name for f in a.updates)


@functools.cache
def _program(design: str) -> Program:
    d = default_registry().get(design)
    return d.build(d.universal_scenario(dict(CONSTANTS), ()))


def _broken_steps(program: Program, actions: list[Action]) -> dict[tuple[str, str], int]:
    """(function, invariant) -> how many of ``actions`` can break it from a state satisfying every invariant."""
    enc = encode(program)
    props = {p.name: p.expr for p in program.properties}
    invs = [n for n in (P2, P1) if n in props]
    s, t = enc.state("s"), enc.state("t")
    out: dict[tuple[str, str], int] = {}
    for a in actions:
        for g in invs:
            sv = z3.Solver()
            sv.set("timeout", 60_000)
            sv.add(enc.ranges(s), enc.action_trans(a, s, t), *[enc.holds(props[x], s) for x in invs],
                   z3.Not(enc.holds(props[g], t)))
            r = sv.check()
            assert r != z3.unknown, f"{a.function}: {g}: solver unknown"
            if r == z3.sat:
                out[(a.function, g)] = out.get((a.function, g), 0) + 1
    return out


@pytest.mark.parametrize(("design", "steps", "invariants"), [
    ("mainline", 51, {P1, P2}),  # each of the 4 mask stores commits on two paths: with in_use, without
    ("5.15", 47, {P2}),  # pre-dynamic: assignment needs the queues bound to vfio_ap, no P1 lemma stated
    ("v17", 52, {P2}),
])
def test_every_mask_writing_step_keeps_the_mask_invariants(design: str, steps: int, invariants: set[str]) -> None:
    program = _program(design)
    writers = [a for a in program.actions if _writes_masks(a)]
    assert len(writers) == steps
    assert {p.name for p in program.properties} & {P1, P2} == invariants
    assert {a.function for a in writers} >= {"assign_adapter_store", "assign_domain_store",
                                             "unassign_adapter_store", "vfio_ap_mdev_remove"}
    assert _broken_steps(program, writers) == {}


@pytest.mark.slow
@pytest.mark.parametrize("design", ["5.10", "5.11", "5.12", "5.15-pre", "6.2", "6.8", "final", "v15", "v16",
                                    "v16-hook", "v17-data-before-put", "v18"])
def test_every_design_keeps_the_mask_invariants(design: str) -> None:
    program = _program(design)
    assert _broken_steps(program, [a for a in program.actions if _writes_masks(a)]) == {}


def _without_validation(program: Program, a: Action) -> Action:
    """``a`` (an assign_adapter_store commit) setting the bit unconditionally: no vfio_ap_mdev_validate_masks."""
    f = next(f for f in a.updates if f.name.endswith(".matrix.apm"))
    labels = f.meta["labels"]
    apid = program.threads[a.thread].name.rsplit("apid", 1)[1]
    bit: Expr = MaskConst(len(labels), [labels.index(apid)])
    return dataclasses.replace(a, updates={**a.updates, f: f.var | bit})


def test_a_step_that_skips_the_rules_is_caught() -> None:
    # the mask proofs' P2.broken, on the design's own step: assignment without the sharing check
    program = _program("mainline")
    commit = next(a for a in program.actions if a.function == "assign_adapter_store" and _writes_masks(a))
    assert _broken_steps(program, [_without_validation(program, commit)]) == {
        ("assign_adapter_store", P2): 1, ("assign_adapter_store", P1): 1}
