"""Instance pools read back as quantifiers (checker.prove.parametric.pools): which steps are pool-parametric."""

from __future__ import annotations

from collections.abc import Callable

from checker.lang.block import Use, emit
from checker.lang.expr import INT, And, Expr, If, Not, Or, Select, Slot, lift
from checker.lang.layout import Field, bool_field, ref_field
from checker.lang.program import ProgramBuilder
from checker.lang.program_types import Member, Program
from checker.prove.parametric.pools import Pools, if_chain, liftability
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


def _stores(value: Callable[[int, list[Field]], Expr]) -> Program:
    """N devices with a ``busy`` flag each; thread k stores ``value(k, busy)`` into its ``found`` pointer."""
    pb = ProgramBuilder("pool")
    busy = [bool_field(f"dev{k}.busy", init=False) for k in range(N)]
    for f in busy:
        pb.var(f)
    for k in range(N):
        found = ref_field(f"T{k}.found", SLOTS)
        pb.var(found)
        pb.thread(f"T{k}").step("f", "step", updates={found: value(k, busy)})
    pb.instance_pool("dev", [Member([], [busy[k]], [], [SLOTS[k]]) for k in range(N)])
    return pb.build()


def test_a_list_walk_storing_the_member_it_finds_is_parametric() -> None:
    # found = the first busy device: each case stores its own device's slot (a value of the pointer's domain)
    def value(k: int, busy: list[Field]) -> Expr:
        out: Expr = lift(-1, INT)
        for j in reversed(range(N)):
            out = If(busy[j].var, j, out)
        return out
    assert _reach(_stores(value)) == {}


def test_a_slot_stored_deep_in_a_value_is_named() -> None:
    # found = "the next device" when mine is busy: the constant names a particular other member
    def value(k: int, busy: list[Field]) -> Expr:
        return If(busy[k].var, (k + 1) % N, -1)
    assert _reach(_stores(value)) == {f"T{k}@f#0": {(k + 1) % N} for k in range(N)}


def test_a_copy_per_member_holding_a_loop_over_the_others_is_parametric() -> None:
    # for every device j: j.busy = "the device the pointer names has j as its peer": the copy for j reads every
    # device's peer (one case per device the pointer may name), a loop over the others once j is fixed
    pb = ProgramBuilder("pool")
    busy = [bool_field(f"dev{k}.busy", init=False) for k in range(N)]
    peer = [ref_field(f"dev{k}.peer", SLOTS, init=k) for k in range(N)]
    for f in busy + peer:
        pb.var(f)
    for k in range(N):
        ptr = ref_field(f"T{k}.ptr", SLOTS, init=k)
        pb.var(ptr)
        pb.thread(f"T{k}").step("f", "step", updates={
            busy[j]: Select([p.var == j for p in peer], ptr.var, False) for j in range(N)})
    pb.instance_pool("dev", [Member([], [busy[k], peer[k]], [], [SLOTS[k]]) for k in range(N)])
    assert liftability(pb.build(), {})["dev"] == []


def test_a_step_split_into_one_action_per_member_a_pointer_may_name_is_parametric() -> None:
    # down_write of the rwsem of the device a pointer names: when it is taken the builder queues the
    # thread as its waiting writer in an action of its own per device (rwsem_down_write_slowpath)
    pb = ProgramBuilder("pool")
    rw = [pb.rwsem(f"dev{k}.rw", cls="dev->rw") for k in range(N)]
    ptrs = []
    for k in range(N):
        t = pb.thread(f"T{k}")
        ptr = ref_field(f"T{k}.ptr", SLOTS, init=k)
        pb.var(ptr)
        ptrs.append(ptr)
        emit(t, "f", "down_write(ptr->rw)", acquire=[Use(rw, None, ptr.var, "w")])
    pb.instance_pool("dev", [Member([], [], [rw[k]], [SLOTS[k]]) for k in range(N)])
    program = pb.build()
    assert sum(len(acts) for acts in program.by_label[0]) == 1 + N  # the step and a queueing action per device
    assert liftability(program, {})["dev"] == []


def _first_busy(busy: list[Field], order: list[int] | None = None) -> Expr:
    """``list_for_each_entry`` to the first busy device (its slot), else -1: one case per device, in list order."""
    out: Expr = lift(-1, INT)
    for j in reversed(order if order is not None else list(range(N))):
        out = If(busy[j].var, Slot(j, SLOTS), out)
    return out


def test_a_find_first_inside_each_copy_of_a_loop_is_parametric() -> None:
    # for every other device j: "j is not the first busy device". Swapping two devices reorders the list walk in
    # each copy, so the copies are renamings of each other only as sets of cases: the lifting reads the walk as
    # "some busy device" (exact where at most one is busy), the same in every copy
    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return And(*[_first_busy(busy) != j for j in range(N) if j != k]), {}
    program = _program(step)
    assert _reach(program) == {}
    chain = program.actions[0].guard.args[0].a  # type: ignore[attr-defined]
    assert Pools(program).choice(chain, "dev") == {0: 0, 1: 1, 2: 2}


def test_a_walk_missing_a_member_or_with_a_default_naming_one_is_no_find_first() -> None:
    def walk(busy: list[Field], order: list[int], default: Expr) -> Expr:
        out = default
        for j in reversed(order):
            out = If(busy[j].var, Slot(j, SLOTS), out)
        return out

    def step(k: int, busy: list[Field], ptr: Field) -> tuple[Expr, dict[Field, Expr]]:
        return And(walk(busy, [0, 1], lift(-1, INT)) != -1, walk(busy, [0, 1, 2], Slot(2, SLOTS)) != -1,
                   Not(busy[k].var)), {}
    program = _program(step)
    pools = Pools(program)
    short, named = [x.a for x in program.actions[0].guard.args[:2]]  # type: ignore[attr-defined]
    assert [len(if_chain(c)[0]) for c in (short, named)] == [2, 3]
    assert pools.choice(short, "dev") is None and pools.choice(named, "dev") is None
    # (T2's own member is the one the short walk misses and the other's default: the rest is a class of copies)
    assert _reach(program) == {"T0@f#0": {1, 2}, "T1@f#0": {0, 2}}


def _residue(spec: str) -> dict[str, list[str]]:
    """Per pool, the kernel functions of the steps that still name a member beyond their own outside a loop, in
    the universal scenario of ``spec``'s operations at three guests (sized_constants: kvm k with mdev k
    attached), as built."""
    loaded = load_spec(spec, default_registry())
    design = loaded.design
    constants, sized_ops, _ = design.sized_constants(3, 2, 1)  # type: ignore[attr-defined]
    ops = tuple(dict.fromkeys([c.name for t in loaded.scenario.threads for c in t.run] + list(sized_ops)))
    scenario = design.universal_scenario(constants, ops)  # type: ignore[attr-defined]
    owners = design.instance_owners(scenario)  # type: ignore[attr-defined]
    return {pool: sorted({r.function for r in steps})
            for pool, steps in liftability(design.build(scenario), owners).items()}


def test_every_mainline_step_is_parametric_in_the_guests() -> None:
    # the queue remove path reaches the mdev vfio_ap_mdev_for_queue's list walk finds (and its kvm->lock): a
    # find-first over the mdevs inside each copy, compared as a set of cases (Pools.choice)
    assert _residue("specs/parametric-mainline.yaml") == {"guest": [], "mdev": [], "vm": []}


def test_every_mask_store_step_is_parametric() -> None:
    # the reprobes of the apmask/aqmask stores: the same list walk, in the queue remove and probe paths
    assert _residue("specs/parametric-mainline-masks.yaml") == {"guest": [], "mdev": [], "vm": []}


def test_the_scan_steps_not_yet_parametric() -> None:
    # the scan's vfio_ap_mdev_cfg_remove and on_scan_complete visit the mdevs one critical section after the other,
    # a loop over the pool in the control flow (one step per mdev), which no class of sibling items reads back
    residue = _residue("tests/data/parametric-stores-scans.yaml")
    assert residue == {"vm": [], "mdev": ["vfio_ap_on_cfg_changed", "vfio_ap_on_scan_complete"],
                       "guest": ["vfio_ap_on_cfg_changed", "vfio_ap_on_scan_complete"]}
