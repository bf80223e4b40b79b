"""Symmetry over whole VM groups (issue 7 point 2): a struct kvm slot with its vCPUs and locks, the
matrix_mdev the scenario pairs with it, and their threads, permuted together; the values that name
slots (``matrix_mdev->kvm``, hook targets, queue owners, thread locals, lock owners) renamed.

The engine's structural check is the gate: identical VMs are swapped, a scenario that tells them
apart (an administrator of mdev1 only) is not. Counts are pinned in specs/golden.json as well.
"""

from __future__ import annotations

import os
import random
from typing import Any

from checker.cli.golden import ROOT, run_spec
from checker.lang.expr import And, Not, Or
from checker.lang.layout import ref_field
from checker.lang.program import Member, Program, ProgramBuilder
from checker.report.results import HOLDS, VIOLATED, CheckResult
from checker.search.progmodel import ProgramModel
from checker.search.reduce.symmetry import symmetry_for
from checker.search.run import replay_trace
from tests.helpers_models import check
from tests.test_reduce import build_program_of

TWO_VMS = os.path.join(ROOT, "specs", "final-two-vms.yaml")
APQNS = os.path.join(ROOT, "specs", "final-two-vms-apqns.yaml")
LIFECYCLE = os.path.join(ROOT, "specs", "v17-two-vms-lifecycle.yaml")
VM_CLASS = [{"declaration": "vms", "members": [{"threads": ["vcpu0", "qemu0"], "slots": ["kvm0", "mdev0"]},
                                                {"threads": ["vcpu1", "qemu1"], "slots": ["kvm1", "mdev1"]}],
             "permutations": 2}]


def _verdicts(r: CheckResult) -> list[tuple[str, str, int | None]]:
    return [(p.name, p.status, p.trace.length if p.trace else None) for p in r.properties]


def test_two_identical_vms_are_swapped_whole() -> None:
    """54848 states unreduced; 27506 orbits under the VM swap; 17890 with partial-order on top."""
    full = run_spec(TWO_VMS, reduction="none")
    sym = run_spec(TWO_VMS, reduction="symmetry")
    both = run_spec(TWO_VMS)
    assert (full.stats.states, sym.stats.states, both.stats.states) == (54848, 27506, 17890)
    assert full.result == sym.result == both.result == HOLDS
    assert _verdicts(sym) == _verdicts(full)  # symmetry alone keeps BFS distances: same trace lengths
    assert [(p.name, p.status) for p in both.properties] == [(p.name, p.status) for p in full.properties]
    assert sym.stats.reductions["ran"] == ["symmetry"]
    assert sym.stats.reductions["symmetry_classes"] == VM_CLASS
    assert both.stats.reductions["symmetry_groups"] == {"vms": [["vcpu0", "qemu0"], ["vcpu1", "qemu1"]]}
    assert [(e.src, e.dst) for e in sym.lock_edges] == [(e.src, e.dst) for e in full.lock_edges]
    for r in (sym, both):  # every witness from the reduced searches is a concrete run
        for p in r.properties:
            if p.trace is not None:
                replay_trace(build_program_of(TWO_VMS), p.trace.actions)


def test_a_counterexample_from_the_reduced_search_replays() -> None:
    """v17's kvm_destroy_vm recursion deadlocks either VM: found in 15225 orbits (30390 states), the
    trace is a concrete run of 26 steps ending in a state where no thread can move."""
    full = run_spec(LIFECYCLE, reduction="none")
    sym = run_spec(LIFECYCLE, reduction="symmetry")
    assert (full.stats.states, sym.stats.states) == (30390, 15225)
    assert _verdicts(sym) == _verdicts(full)
    # the search saw one deadlock state per orbit; the recursive-locking cycles of both VMs are reported
    cycles = [(tuple(c.locks), c.reachable) for c in full.cycles]
    assert cycles == [(("kvm0->lock (in kvm_destroy_vm)",), True), (("kvm1->lock (in kvm_destroy_vm)",), True)]
    assert [(tuple(c.locks), c.reachable) for c in sym.cycles] == cycles
    assert [p.detail for p in sym.properties if p.name == "lock-order"] == [
        p.detail for p in full.properties if p.name == "lock-order"]
    dl = next(p for p in sym.properties if p.name == "deadlock")
    assert dl.status == VIOLATED and dl.trace is not None and dl.trace.length == 26
    program = build_program_of(LIFECYCLE)
    again = replay_trace(program, dl.trace.actions)
    assert [s.thread for s in again.steps] == [s.thread for s in dl.trace.steps]
    model = ProgramModel(program)
    s = model.init_states()[0]
    for aid in dl.trace.actions:
        s = next(n for a, n in model.successors(s) if a == aid)
    assert model.successors(s) == []
    assert any(th.pc.get(s) != th.done for th in program.threads)


def _spec(tmp_path: Any, extra: str) -> str:
    p = tmp_path / "vms.yaml"
    p.write_text(open(TWO_VMS, encoding="utf-8").read() + extra, encoding="utf-8")
    return str(p)


def test_an_administrator_of_one_mdev_breaks_the_symmetry(tmp_path: Any) -> None:
    """The VM groups are declared, the admin thread belongs to neither, and the engine's check refuses
    the swap: the admin's steps, renamed, would assign to mdev0."""
    program = build_program_of(_spec(tmp_path, "  - {name: admin, run: [{assign_domain: {mdev: 1, apqi: 6}}]}\n"))
    assert [d.name for d in program.permutables] == ["vcpus", "vms"]
    assert [m.threads for m in program.permutables[1].members] == [["vcpu0", "qemu0"], ["vcpu1", "qemu1"]]
    sym, why = symmetry_for(program)
    assert sym is None and why == "no two declared instances are interchangeable in this scenario"


def test_one_administrator_per_mdev_joins_its_vm_group(tmp_path: Any) -> None:
    admins = ("  - {name: admin0, run: [{assign_domain: {mdev: 0, apqi: 6}}]}\n"
              "  - {name: admin1, run: [{assign_domain: {mdev: 1, apqi: 6}}]}\n")
    sym, why = symmetry_for(build_program_of(_spec(tmp_path, admins)))
    assert sym is not None, why
    assert sym.describe() == {"vms": [["vcpu0", "qemu0", "admin0"], ["vcpu1", "qemu1", "admin1"]]}
    assert [m["slots"] for m in sym.describe_classes()[0]["members"]] == [["kvm0", "mdev0"], ["kvm1", "mdev1"]]
    # different domains, each used by one group only: the domains are swapped with the groups
    sym, _ = symmetry_for(build_program_of(_spec(tmp_path, admins.replace("mdev: 1, apqi: 6", "mdev: 1, apqi: 5"))))
    assert sym is not None
    assert [m["slots"] for m in sym.describe_classes()[0]["members"]] == [
        ["kvm0", "mdev0", "domain 6"], ["kvm1", "mdev1", "domain 5"]]


def test_values_naming_slots_follow_the_swap() -> None:
    """mdev0 attached to kvm0 (vfio_ap_mdev_set_kvm done by qemu0) is mdev1 attached to kvm1."""
    program = build_program_of(TWO_VMS)
    sym, _ = symmetry_for(program)
    assert sym is not None
    lay = program.layout
    mine = lay.encode({"mdev0.kvm": 0, "kvm0->arch.crypto.pqap_hook": 0, "qemu0.pc": 5, "kvm0.refs": 4})
    twin = lay.encode({"mdev1.kvm": 1, "kvm1->arch.crypto.pqap_hook": 1, "qemu1.pc": 5, "kvm1.refs": 4})
    assert sym.canonical(mine) == sym.canonical(twin) == min(mine, twin)
    # a cross attachment is not the image of a straight one
    cross = lay.encode({"mdev1.kvm": 0, "kvm0->arch.crypto.pqap_hook": 1, "qemu1.pc": 5, "kvm0.refs": 4})
    assert sym.canonical(cross) not in (sym.canonical(mine),)


# ---------------------------------------------------------------- the engine, without vfio_ap


def owners(write: tuple[int, int] = (0, 1), slots: bool = True, ordering: bool = False) -> Program:
    """Two workers, each pointing its own field at a pool slot (``write[i]``): ``own_i := o_write[i]``.
    ``slots``: the members name their slots (values renamed); ``ordering``: a property compares two
    slot values with ``<`` (a renaming of names does not keep it)."""
    pb = ProgramBuilder("owners")
    pool = pb.pool("obj", ["o0", "o1"], init_alive=[0, 1])
    members, refs = [], []
    for i in range(2):
        f = ref_field(f"w{i}.own", ["o0", "o1"])
        refs.append(pb.var(f))
        tb = pb.thread(f"w{i}")
        tb.step("own", f"own = o{write[i]}", updates={f: write[i]})
        members.append(Member([f"w{i}"], [f, pool.state[i]], [], [f"o{i}"] if slots else []))
    pb.permutable("workers", members)
    pb.always("distinct", Not(And(refs[0] != -1, refs[1] != -1, refs[0] == refs[1])), "never the same slot")
    if ordering:
        pb.always("ordered", Or(refs[0] == -1, Not(refs[0] < refs[1])), "ordering on slot values")
    return pb.build()


def test_member_slots_rename_the_values_that_name_them() -> None:
    program = owners()
    sym, why = symmetry_for(program)
    assert sym is not None, why
    lay = program.layout
    a = lay.encode({"w0.own": 0, "w0.pc": 1})
    b = lay.encode({"w1.own": 1, "w1.pc": 1})
    assert sym.canonical(a) == sym.canonical(b) == min(a, b)
    assert sym.canonical(lay.encode({"w1.own": 0, "w1.pc": 1})) != sym.canonical(a)
    full, red = check(program), check(program, reduction="symmetry")
    assert (full.stats.states, red.stats.states) == (4, 3)
    assert [(p.name, p.status) for p in red.properties] == [(p.name, p.status) for p in full.properties]


def test_the_check_refuses_what_the_values_do_not_allow() -> None:
    # without slots, own0 := o0 swapped is own1 := o0, not own1 := o1
    assert symmetry_for(owners(slots=False))[0] is None
    # both workers point at o0: a swap of the slots would make one point at o1 ...
    assert symmetry_for(owners(write=(0, 0)))[0] is None
    # ... while swapping the workers alone (their values kept) is a symmetry
    assert symmetry_for(owners(write=(0, 0), slots=False))[0] is not None
    # an ordering between two slot values is not kept by renaming the slots
    assert symmetry_for(owners(ordering=True))[0] is None


WREATH = """\
name: wreath
design: final
constants: {vms: 2, vcpus: 2, mdevs: 2, domains: [5], attached: ["mdev0 -> kvm0", "mdev1 -> kvm1"]}
threads:
  - {name: vcpu00, run: [{kvm_run: {vm: 0, vcpu: 0}}]}
  - {name: vcpu01, run: [{kvm_run: {vm: 0, vcpu: 1}}]}
  - {name: vcpu10, run: [{kvm_run: {vm: 1, vcpu: 0}}]}
  - {name: vcpu11, run: [{kvm_run: {vm: 1, vcpu: 1}}]}
"""


def test_vcpus_inside_swapped_vms_compose(tmp_path: Any) -> None:
    """Two VMs of two vCPUs: each VM's vCPUs are a class, the VMs another; the 8 permutations they
    generate (a wreath product) are all used: 2160 states, 357 orbits."""
    p = tmp_path / "wreath.yaml"
    p.write_text(WREATH, encoding="utf-8")
    full, sym = run_spec(str(p), reduction="none"), run_spec(str(p), reduction="symmetry")
    assert (full.stats.states, sym.stats.states) == (2160, 357)
    assert _verdicts(sym) == _verdicts(full)
    classes = sym.stats.reductions["symmetry_classes"]
    assert [(c["declaration"], c["permutations"]) for c in classes] == [("vcpus", 2), ("vcpus", 2), ("vms", 2)]
    _assert_automorphism(build_program_of(str(p)), 7)


def _assert_automorphism(program: Program, perms: int) -> None:
    """Independently of the structural check: every permutation maps the reachable states onto
    reachable states and commutes with the successor relation (violations included)."""
    sym, _ = symmetry_for(program)
    assert sym is not None and len(sym.perms) == perms
    model = ProgramModel(program)
    succ: dict[int, list[int]] = {}
    todo = model.init_states()
    while todo:
        s = todo.pop()
        if s in succ:
            continue
        succ[s] = sorted(n for _, n in model.successors(s))
        todo.extend(n for n in succ[s] if n >= 0 and n not in succ)
    for s, nexts in succ.items():
        images = [sym.images(n) if n >= 0 else [n] * perms for n in nexts]
        for k, t in enumerate(sym.images(s)):
            assert t in succ
            assert sorted(img[k] for img in images) == succ[t]


def test_the_vm_swap_is_an_automorphism_of_the_reachable_graph() -> None:
    _assert_automorphism(build_program_of(TWO_VMS), 1)
    _assert_automorphism(build_program_of(LIFECYCLE), 1)


def test_partitioned_search_stores_representatives_too(monkeypatch: Any) -> None:
    """Two worker processes reduce as one process does: same orbits, verdicts and concrete traces
    (partitions expand representatives, as explore.bfs does, so traces are made concrete alike)."""
    from checker.search import parallel
    from tests.test_parallel import check_same

    monkeypatch.setattr(parallel, "FAN_OUT_FRONTIER", 1)
    for spec, states in (("specs/v17-two-vms-lifecycle.yaml", 15225), ("specs/final-two-vms.yaml", 27506)):
        assert check_same(spec, 2, reduction="symmetry").stats.states == states


def test_adapters_and_domains_move_with_their_vm() -> None:
    """Each VM with its own APQN: the swap also exchanges adapters 3/4 and domains 5/6 (bits of every
    mask, queue fields): 52384 states, 26242 orbits, 16917 with partial-order reduction."""
    full, sym, both = (run_spec(APQNS, reduction=r) for r in ("none", "symmetry", "all"))
    assert (full.stats.states, sym.stats.states, both.stats.states) == (52384, 26242, 16917)
    assert _verdicts(sym) == _verdicts(full)
    assert [(p.name, p.status) for p in both.properties] == [(p.name, p.status) for p in full.properties]
    assert [m["slots"] for m in sym.stats.reductions["symmetry_classes"][0]["members"]] == [
        ["kvm0", "mdev0", "adapter 3", "domain 5"], ["kvm1", "mdev1", "adapter 4", "domain 6"]]
    program = build_program_of(APQNS)
    sym_, _ = symmetry_for(program)
    assert sym_ is not None
    lay = program.layout
    # kvm0 running with 03.0005 (in its CRYCB, the queue holding its data) is kvm1 with 04.0006
    mine = lay.encode({"kvm0.crycb.apm": 0b01, "kvm0.crycb.aqm": 0b01, "ap_queue[03.0005].data": 2})
    twin = lay.encode({"kvm1.crycb.apm": 0b10, "kvm1.crycb.aqm": 0b10, "ap_queue[04.0006].data": 3})
    assert sym_.canonical(mine) == sym_.canonical(twin)
    _assert_automorphism(program, 1)


def test_apqns_that_tell_the_vms_apart_are_refused(tmp_path: Any) -> None:
    text = open(APQNS, encoding="utf-8").read()
    p = tmp_path / "x.yaml"
    # mdev1 holds two adapters: no element swap maps one matrix onto the other
    p.write_text(text.replace('"mdev1: 4 x 6"', '"mdev1: 3,4 x 6"').replace('"mdev0: 3 x 5", ', ''), encoding="utf-8")
    assert symmetry_for(build_program_of(str(p)))[0] is None
    # the two administrators unassign different kinds of things
    p.write_text(text.replace("{unassign_adapter: {mdev: 1, apid: 4}}", "{unassign_domain: {mdev: 1, apqi: 6}}"),
                 encoding="utf-8")
    assert symmetry_for(build_program_of(str(p)))[0] is None


def test_generated_canonical_form_is_the_least_image(tmp_path: Any) -> None:
    """The generated canonical function stops comparing at the first differing field; it must still
    be the least of a state and its images, with one permutation and with seven (random states)."""
    p = tmp_path / "wreath.yaml"
    p.write_text(WREATH, encoding="utf-8")
    rnd = random.Random(7)
    for program in (build_program_of(APQNS), build_program_of(str(p))):
        sym, _ = symmetry_for(program)
        assert sym is not None
        for _ in range(3000):
            s = rnd.getrandbits(program.layout.total_bits)
            assert sym.canonical(s) == min(s, *sym.images(s))


def test_vm_groups_follow_the_scenarios_pairing(tmp_path: Any) -> None:
    """kvm0 runs with mdev1 and kvm1 with mdev0: the groups are (kvm0, mdev1) and (kvm1, mdev0)."""
    p = tmp_path / "cross.yaml"
    p.write_text("""\
name: cross
design: final
constants: {vms: 2, mdevs: 2, domains: [5], attached: ["mdev0 -> kvm1", "mdev1 -> kvm0"]}
threads:
  - {name: vcpu0, run: [{kvm_run: {vm: 0}}]}
  - {name: vcpu1, run: [{kvm_run: {vm: 1}}]}
  - {name: qemu0, run: [{close_device: {mdev: 1}}]}
  - {name: qemu1, run: [{close_device: {mdev: 0}}]}
""", encoding="utf-8")
    program = build_program_of(str(p))
    sym, _ = symmetry_for(program)
    assert sym is not None
    assert [(m["threads"], m["slots"]) for m in sym.describe_classes()[0]["members"]] == [
        (["vcpu0", "qemu0"], ["kvm0", "mdev1"]), (["vcpu1", "qemu1"], ["kvm1", "mdev0"])]
    _assert_automorphism(program, 1)
