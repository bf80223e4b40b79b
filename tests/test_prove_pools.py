"""Instance pools read back as quantifiers (checker.prove.parametric.pools): which steps are pool-parametric."""

from __future__ import annotations

from collections.abc import Callable

from checker.lang.expr import And, Expr, Or, Select
from checker.lang.layout import Field, bool_field, ref_field
from checker.lang.program import ProgramBuilder
from checker.lang.program_types import Member, Program
from checker.prove.parametric.pools import liftability
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

N = 3
SLOTS = tuple(f"dev{k}" for k in range(N))


def _program(step: Callable[[int, list[Field], Field], tuple[Expr, dict[Field, Expr]]]) -> Program:
    """N devices with a ``busy`` flag each; thread k runs one step ``step(k, busy, ptr)`` (guard, updates);
    ``ptr`` is thread k's pointer into the devices."""
    pb = ProgramBuilder("pool")
    busy = [bool_field(f"dev{k}.busy", init=False) for k in range(N)]
    for f in busy:
        pb.var(f)
    for k in range(N):
        t = pb.thread(f"T{k}")
        ptr = ref_field(f"T{k}.ptr", SLOTS, init=k)
        pb.var(ptr)
        guard, updates = step(k, busy, ptr)
        t.step("f", "step", guard=guard, updates=updates)
    pb.instance_pool("dev", [Member([], [busy[k]], [], [SLOTS[k]]) for k in range(N)])
    return pb.build()


def _reach(program: Program) -> dict[str, set[int]]:
    return {r.where: r.members for r in liftability(program, {f"T{k}": {"dev": k} for k in range(N)})["dev"]}


def test_a_step_on_its_own_member_and_a_loop_over_every_other_one_is_parametric() -> None:
    # "no other device is busy, then mark mine": a forall over the others, unrolled, each copy the other renamed
    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return And(*[b.var == False for j, b in enumerate(busy) if j != k]), {busy[k]: And(True)}  # noqa: E712
    assert _reach(_program(step)) == {}


def test_a_select_by_a_pointer_is_parametric() -> None:
    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return Select([b.var for b in busy], ptr.var, False), {}
    assert _reach(_program(step)) == {}


def test_a_step_naming_one_particular_other_member_is_not() -> None:
    # "the next device" (k + 1 mod N) is no loop: a pool-parametric step cannot name it
    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return Or(busy[k].var, busy[(k + 1) % N].var), {}
    assert _reach(_program(step)) == {f"T{k}@f#0": {(k + 1) % N} for k in range(N)}


def test_a_loop_whose_copies_are_not_renamings_of_each_other_is_not() -> None:
    # device 2's copy differs (it reads the flag negated): not one body at every member
    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return And(*[b.var if j != 2 else b.var == False for j, b in enumerate(busy) if j != k]), {}  # noqa: E712
    assert _reach(_program(step)) == {"T0@f#0": {1, 2}, "T1@f#0": {0, 2}}


def test_the_mainline_steps_not_yet_parametric_in_the_guests() -> None:
    """The universal scenario of parametric-mainline at three guests (sized_constants: kvm k with mdev k
    attached): the kernel steps that still name a guest beyond their own outside a loop, as built."""
    loaded = load_spec("specs/parametric-mainline.yaml", default_registry())
    design = loaded.design
    constants, sized_ops, _ = design.sized_constants(3, 2, 1)  # type: ignore[attr-defined]
    ops = tuple(dict.fromkeys([c.name for t in loaded.scenario.threads for c in t.run] + list(sized_ops)))
    scenario = design.universal_scenario(constants, ops)  # type: ignore[attr-defined]
    owners = design.instance_owners(scenario)  # type: ignore[attr-defined]
    functions = sorted({r.function for r in liftability(design.build(scenario), owners)["guest"]})
    assert functions == ["assign_adapter_store", "assign_control_domain_store", "assign_domain_store",
                         "get_update_locks_for_queue", "unassign_adapter_store", "unassign_control_domain_store",
                         "unassign_domain_store", "vfio_ap_mdev_remove_queue", "vfio_ap_mdev_unset_kvm"]
