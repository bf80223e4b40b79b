"""A ZAPQ acts on the machine's AP configuration, not on a kernel copy of it (ap_model/domain.py ``reset_queue``).

The host reserves adapter 3 for zcrypt and releases it again (two reprobes of 03.0005) while the AP bus sees
adapter 3 leave the configuration and come back. Before, a reset counted only if vfio_ap's copy of QCI
(matrix_dev->info) had the adapter, so zcrypt's ap_queue_remove "read" matrix_dev->info: lock-discipline VIOLATED
(without guests_lock, while vfio_ap_on_cfg_changed writes it; zcrypt and the AP bus never read vfio_ap's copy),
and lemma-binding-steps / lemma-queue-data VIOLATED, stated as if a vfio_ap queue could not hold stale host data
of an adapter gone from the configuration. The kernel: ap_queue_remove issues ap_zapq unconditionally, as
vfio_ap's resets do (vfio_ap_mdev_remove_queue alone first tests matrix_dev->info, b9bd10c43456); a ZAPQ on a
queue whose adapter is out of the machine's configuration answers rc 01 and changes nothing, the queue's contents
are out of every program's reach, and the machine resets the queue before it returns to the configuration. The
model: the machine's configuration is the ghost ``ghost.hw_config.apm``, written in the scan's fetch of QCI with
the bus's copy (``ap_qci_info.apm``), and reset-before-owner-change is about queues in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.lang.expr import Expr
from checker.lang.layout import Field
from checker.search.pycompile import evaluate, state_values
from tests.test_false_reports import explore, run, status
from tests.test_false_reports_reprobe import SPEC as REPROBE_SPEC
from tests.test_false_reports_reprobe import VERDICTS as REPROBE_VERDICTS

# the reprobe test's world (adapters 3 and 4, mdev0: 4 x 5 attached to kvm0), adapter 3 not reserved at start
SPEC = REPROBE_SPEC.split("  apmask: [3]\n")[0].replace("reprobe-release-race", "reprobe-vs-standby") + """threads:
  - {{name: host, run: [{{apmask_store: {{reserve: [3]}}}}, {{apmask_store: {{release: [3]}}}}]}}
  - {{name: bus, run: [{{adapter_standby: {{apid: 3}}}}, {{adapter_online: {{apid: 3}}}}]}}
"""
# with an admin assigning adapter 3 to the guest's mdev once the host has released it
ASSIGN = "  - {name: admin, run: [{assign_adapter: {mdev: 0, apid: 3}}]}\n"

# every property HOLDS but data-race, the kernel's own race (the reprobe's unlocked read of dev->driver in
# __ap_revise_reserved), not this fix's; the scenario's witnesses
VERDICTS = REPROBE_VERDICTS | {"guest-apcb-changed": "NOT_WITNESSED", "queue-to-zcrypt": "WITNESSED",
                               "config-removed-under-guest": "WITNESSED"}
KERNEL_RACE = ("host (__ap_revise_reserved) reads ap_queue[03.0005].driver while bus (vfio_ap_mdev_remove_queue) "
               "writes it, with no common lock")
GONE = "adapter 03 not in the configuration"


@pytest.mark.parametrize("design", ["mainline", "6.8"])
def test_reprobe_against_standby_reports_only_the_kernels_race(design: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design))
    assert status(res) == VERDICTS
    assert next(p.detail for p in res.properties if p.name == "data-race").startswith(KERNEL_RACE)
    assert (res.stats.states, res.stats.transitions) == (863, 1488)  # nothing to reduce


def _shown(program: object, function: str) -> dict[str, set[tuple[str, str]]]:
    """Every transition of ``function``'s steps in the reachable graph: the text the trace shows (the branch
    that ran) -> the set of (data of 03.0005 before, after)."""
    lay = program.layout  # type: ignore[attr-defined]
    data = lay["ap_queue[03.0005].data"]
    out: dict[str, set[tuple[str, str]]] = {}
    for s, succ in explore(program).items():
        values = state_values(lay.fields, s)

        def holds(c: Expr, values: dict[Field, int] = values) -> bool:
            return bool(evaluate(c, values))

        for aid, t in succ:
            act = program.actions[aid]  # type: ignore[attr-defined]
            if act.function == function and t >= 0:
                out.setdefault(act.shown_text(holds), set()).add((data.show(data.get(s)), data.show(data.get(t))))
    return out


def test_zcrypt_zapq_outside_the_configuration_has_no_effect(tmp_path: Path) -> None:
    """ap_queue_remove's ap_zapq clears the host's data exactly where the machine still has adapter 3 (the
    scan's fetch of QCI not yet run, or the adapter back); after the fetch it is rc 01: the data stays."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    assert _shown(program, "ap_queue_remove") == {
        "zcrypt unbinds: ap_zapq": {("host", "clean")},
        f"zcrypt unbinds: ap_zapq: {GONE} (rc 01): no effect": {("host", "host")}}


def test_vfio_ap_remove_tests_its_copy_and_the_zapq_the_machine(tmp_path: Path) -> None:
    """vfio_ap_mdev_remove_queue resets only if matrix_dev->info has the APQN (b9bd10c43456); between the scan's
    fetch and vfio_ap_on_cfg_changed it still does, and that ZAPQ is rc 01. Its data: clean, or the host's that
    the reprobe's zcrypt remove could not clear."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    assert _shown(program, "vfio_ap_mdev_remove_queue") == {
        "vfio_ap_mdev_reset_queue; unlink; kfree(q); release_update_locks_for_queue": {("clean", "clean")},
        f"vfio_ap_mdev_reset_queue; ZAPQ rc 01 ({GONE}): no effect; unlink; kfree(q); "
        "release_update_locks_for_queue": {("clean", "clean")},
        "not in matrix_dev->info: no reset; unlink; kfree(q); release_update_locks_for_queue":
            {("clean", "clean"), ("host", "host")}}


def test_machine_configuration_is_the_bus_copy_and_only_where_it_changes(tmp_path: Path) -> None:
    """The ghost equals ap_qci_info.apm in every reachable state (it adds no state); a scenario that changes no
    configuration has neither (its machine configuration is the spec's, a constant)."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    lay = program.layout  # type: ignore[attr-defined]
    hw, qci = lay["ghost.hw_config.apm"], lay["ap_qci_info.apm"]
    states = explore(program)
    assert {hw.get(s) == qci.get(s) for s in states} == {True}
    assert {hw.show(hw.get(s)) for s in states} == {"{3,4}", "{4}"}
    _, program = run(tmp_path, SPEC.format(design="mainline").split("  - {name: bus")[0])
    names = list(program.layout._by_name)  # type: ignore[attr-defined]
    assert not [n for n in names if "hw_config" in n or "ap_qci_info" in n]


def test_a_deconfigured_queue_in_a_guest_reaches_it_no_data(tmp_path: Path) -> None:
    """With an admin assigning adapter 3: after the fetch (the machine has no adapter 3) and before
    vfio_ap_on_cfg_changed (matrix_dev->info still has it), the release's reprobe binds 03.0005 to vfio_ap with
    the host's data (zcrypt's ZAPQ was rc 01) and the assign plugs it into kvm0's CRYCB. The guest reaches no
    data there (every AP instruction on the queue answers rc 01; the card comes back zeroized), so
    reset-before-owner-change, stated for queues in the machine's configuration, HOLDS; the state is reached."""
    res, program = run(tmp_path, SPEC.format(design="mainline") + ASSIGN)
    assert status(res) == VERDICTS | {"guest-apcb-changed": "WITNESSED"}
    assert (res.stats.states, res.stats.transitions) == (4269, 8086)  # partial-order reduced
    lay = program.layout  # type: ignore[attr-defined]
    names = ["kvm0.crycb.apm", "ap_queue[03.0005].data", "ghost.hw_config.apm", "matrix_dev->info.apm"]
    seen = {tuple(lay[n].show(lay[n].get(s)) for n in names) for s in explore(program)}
    assert ("{3,4}", "host", "{4}", "{3,4}") in seen
    assert not [v for v in seen if v[0] == "{3,4}" and v[1] == "host" and v[2] == "{3,4}"]
