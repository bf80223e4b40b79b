"""An mdev attribute write against the mdev's removal (ap_model/kernel/kernfs.py).

The kernel removes the mdev driver's attribute files (device_remove_groups -> kernfs_drain) before the
bus remove callback reaches vfio_ap_mdev_remove: writes in progress finish first, later writes fail with
-ENODEV. Before, the model let ``assign_adapter`` run after the remove freed the matrix_mdev: "use after
free of struct ap_matrix_mdev mdev0: matrix_mdev (sysfs attribute)", 9 steps on mainline, on every design."""

from __future__ import annotations

from pathlib import Path

import pytest

from ap_model.world import E
from checker.lang.program_types import FREED
from checker.search.progmodel import ProgramModel
from tests.test_false_reports import executed, field, only_run, run, status

SPEC = """
name: remove-against-store
design: "{design}"
constants: {{vms: 1, mdevs: 1, adapters: [3], domains: [5]}}
threads:
  - {{name: admin, run: [{{mdev_remove: {{mdev: 0}}}}]}}
  - {{name: admin2, run: [{{assign_adapter: {{mdev: 0, apid: 3}}}}]}}
"""

DESIGNS = ["mainline", "6.2", "5.15", "v18", "v17", "v16", "v15", "5.15-pre", "5.12", "5.11", "5.10"]


@pytest.mark.parametrize("design", DESIGNS)
def test_store_racing_the_remove_never_reaches_a_freed_mdev(design: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design))
    assert status(res)["memory-safety"] == "HOLDS"
    assert res.result == "HOLDS"


def _ends(program: object) -> set[tuple[int, int, int]]:
    """(admin2.ret, mdev0 state, mdev0.attributes_removed) of every final state."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    seen, todo, out = set(), list(model.init_states()), set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        if model.is_done(s):
            out.add((field(program, "admin2.ret", s), field(program, "mdev0.state", s),
                     field(program, "mdev0.attributes_removed", s)))
        todo += [n for _, n in model.successors(s) if n >= 0]
    return out


def test_a_store_before_the_drain_succeeds_one_after_it_is_enodev(tmp_path: Path) -> None:
    res, program = run(tmp_path, SPEC.format(design="mainline"))
    assert (res.stats.states, res.stats.transitions) == (30, 33)  # partial-order reduced; 47 states in all
    assert _ends(program) == {(0, FREED, 1), (E["ENODEV"], FREED, 1)}


def test_the_drain_waits_for_a_store_in_progress(tmp_path: Path) -> None:
    """No reachable state has the remove past its drain while the store holds its active reference."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    model = ProgramModel(program)
    reader = program.layout["mdev0 attributes: kn->active.reader[1]"]
    gone = program.layout["mdev0.attributes_removed"]
    seen, todo = set(), list(model.init_states())
    both = 0
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        both += int(reader.get(s) == 1 and gone.get(s) == 1)
        todo += [n for _, n in model.successors(s) if n >= 0]
    assert both == 0 and len(seen) == 47


def test_a_store_after_the_remove_is_enodev_and_touches_nothing(tmp_path: Path) -> None:
    _, program = run(tmp_path, """
name: store-after-remove
design: mainline
constants: {vms: 1, mdevs: 1, adapters: [3], domains: [5]}
threads:
  - {name: admin, run: [{mdev_remove: {mdev: 0}}, {assign_adapter: {mdev: 0, apid: 3}}]}
""")
    steps = executed(program)
    assert steps[:2] == [("device_remove_groups", "kernfs_drain(kn): deactivate; wait for the writes in progress"),
                         ("device_remove_groups", "kernfs_drain(kn): drained")]
    assert steps[-2:] == [("kernfs_fop_write_iter", "kernfs_get_active(kn)"), ("syscall_exit", "return to user space")]
    end = only_run(program)
    assert field(program, "admin.ret", end) == E["ENODEV"]


def test_no_remove_no_kernfs_state(tmp_path: Path) -> None:
    """Where the scenario does not remove the mdev it writes, the program is the one it always was."""
    _, program = run(tmp_path, """
name: store-only
design: mainline
constants: {vms: 1, mdevs: 1, adapters: [3], domains: [5]}
threads:
  - {name: admin, run: [{assign_adapter: {mdev: 0, apid: 3}}]}
""")
    names = [f.name for f in program.layout.fields]
    assert not [n for n in names if "attributes" in n or "kn->active" in n]


def test_two_vm_groups_keep_their_symmetry(tmp_path: Path) -> None:
    """The VM-group symmetry carries each mdev's kn->active and attributes_removed (without them the engine
    refuses the swap: no reduction)."""
    from checker.search.reduce.symmetry import symmetry_for

    _, program = run(tmp_path, """
name: two-vms-remove-against-store
design: mainline
constants: {vms: 2, mdevs: 2, domains: [5], matrix: ["mdev0: 3 x 5", "mdev1: 4 x 5"],
            attached: ["mdev0 -> kvm0", "mdev1 -> kvm1"]}
threads:
  - {name: q0, run: [{close_device: {mdev: 0}}, {mdev_remove: {mdev: 0}}]}
  - {name: q1, run: [{close_device: {mdev: 1}}, {mdev_remove: {mdev: 1}}]}
  - {name: a0, run: [{unassign_adapter: {mdev: 0, apid: 3}}]}
  - {name: a1, run: [{unassign_adapter: {mdev: 1, apid: 4}}]}
""")
    sym, why = symmetry_for(program)  # type: ignore[arg-type]
    assert sym is not None, why


def test_a_thread_writing_then_removing_needs_no_drain(tmp_path: Path) -> None:
    """One thread's writes all come before its own remove: no write can meet the drain, no kernfs state
    (specs/parametric-mainline.yaml's admin0); a write after the remove in the same thread does."""
    threads = "[{assign_adapter: {mdev: 0, apid: 3}}, {mdev_remove: {mdev: 0}}]"
    text = """
name: write-then-remove
design: mainline
constants: {vms: 1, mdevs: 1, adapters: [3], domains: [5]}
threads:
  - {name: admin, run: THREADS}
"""
    _, program = run(tmp_path, text.replace("THREADS", threads))
    assert not [f.name for f in program.layout.fields if "attributes" in f.name or "kn->active" in f.name]
    again = threads.replace("]", ", {unassign_adapter: {mdev: 0, apid: 3}}]")
    _, program = run(tmp_path, text.replace("THREADS", again))
    assert "mdev0.attributes_removed" in [f.name for f in program.layout.fields]
