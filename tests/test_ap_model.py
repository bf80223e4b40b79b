"""Domain rules of the vfio_ap model pinned with worked examples (kernel-facts §1.3-§1.7, §2).

Each test builds a tiny one-thread (or sequential) scenario of a design, runs
it to completion along the first enabled successor, and reads the final
state: return codes, masks, bindings, the queue-data ghost.
"""

from __future__ import annotations

from typing import Any

import pytest

from ap_model.designs import all_designs
from checker.lang.design import OpCall, Scenario, ScenarioError, ThreadSpec
from checker.search.progmodel import ProgramModel

DESIGNS = {d.name: d for d in all_designs()}


def run(design: str, constants: dict[str, Any], *threads: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Run the threads one after the other (thread 0 to completion first) and decode the final state."""
    sc = Scenario("t", design, "", constants,
                  [ThreadSpec(f"t{i}", [OpCall(n, a) for n, a in ops]) for i, ops in enumerate(threads)])
    prog = DESIGNS[design].build(sc)
    model = ProgramModel(prog)
    s = model.init_states()[0]
    for _ in range(500):
        if model.is_done(s):
            break
        succ = model.successors(s)
        nxt = sorted((a, n) for a, n in succ if n >= 0)
        assert nxt, f"stuck or violation: {[model.violation(-n - 1) if n < 0 else n for _, n in succ]}"
        # prefer the lowest-numbered thread: sequential execution
        s = min(nxt, key=lambda an: prog.actions[an[0]].thread)[1]
    out = {}
    for f in prog.layout.fields:
        out[f.name] = f.show(f.get(s))
    return out


BASE = {"vms": 1, "mdevs": 2, "domains": [5]}


def test_assign_reserved_adapter_is_eaddrnotavail() -> None:
    # apmask bit 4 set and aqmask (default all) bit 5 set: APQN 04.0005 is reserved for zcrypt
    st = run("final", {**BASE, "apmask": [4]}, [("assign_domain", {"mdev": 0, "apqi": 5}),
                                                ("assign_adapter", {"mdev": 0, "apid": 4})])
    assert st["t0.ret"] == "EADDRNOTAVAIL"
    assert st["mdev0.matrix.apm"] == "{}"
    assert st["ap_queue[04.0005].driver"] == "zcrypt"


def test_reservation_needs_both_mask_bits() -> None:
    # apmask has 4 but aqmask does not have 5: 04.0005 belongs to vfio_ap
    st = run("final", {**BASE, "apmask": [4], "aqmask": []}, [("assign_domain", {"mdev": 0, "apqi": 5}),
                                                              ("assign_adapter", {"mdev": 0, "apid": 4})])
    assert st["t0.ret"] == "0"
    assert st["ap_queue[04.0005].driver"] == "vfio_ap"


def test_sharing_is_eaddrinuse_and_reverted() -> None:
    st = run("final", {**BASE, "matrix": ["mdev1: 3 x 5"]}, [("assign_domain", {"mdev": 0, "apqi": 5}),
                                                             ("assign_adapter", {"mdev": 0, "apid": 3})])
    assert st["t0.ret"] == "EADDRINUSE"
    assert st["mdev0.matrix.apm"] == "{}"


def test_over_provisioning_and_filtering() -> None:
    # adapter 4 is not in the host configuration: assignment succeeds, the shadow filters it out
    st = run("final", {**BASE, "config_apm": [3], "attached": ["mdev0 -> kvm0"]},
             [("assign_domain", {"mdev": 0, "apqi": 5}), ("assign_adapter", {"mdev": 0, "apid": 4}),
              ("assign_adapter", {"mdev": 0, "apid": 3})])
    assert st["t0.ret"] == "0"
    assert st["mdev0.matrix.apm"] == "{3,4}"  # masks show real APIDs/APQIs
    assert st["mdev0.shadow_apcb.apm"] == "{3}"
    assert st["kvm0.crycb.apm"] == "{3}" and st["kvm0.crycb.aqm"] == "{5}"


def test_hot_unplug_resets_the_queue() -> None:
    st = run("final", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("unassign_adapter", {"mdev": 0, "apid": 3})])
    assert st["ap_queue[03.0005].data"] == "clean"
    assert st["kvm0.crycb.apm"] == "{}"


def test_unset_kvm_resets_and_drops_reference() -> None:
    st = run("final", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("close_device", {"mdev": 0})])
    assert st["ap_queue[03.0005].data"] == "clean"
    assert st["mdev0.kvm"] == "NULL"
    assert st["kvm0.refs"] == "2"  # VM fd + vCPU fd remain


def test_second_mdev_for_same_kvm_is_eperm_and_leaves_the_hook() -> None:
    # vfio_ap_mdev_set_kvm publishes the hook before the -EPERM check (final and v16-hook); 6.x's open fails
    # with it, the group notifier's (v16-hook: v5.15 - v5.18) drops it and the open returns 0
    for design, ret in (("final", "EPERM"), ("v16-hook", "0")):
        st = run(design, {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
                 [("open_device", {"mdev": 1, "vm": 0})])
        assert st["t0.ret"] == ret
        assert st["kvm0->arch.crypto.pqap_hook"] == "mdev1"
        assert st["mdev1.kvm"] == "NULL"


def test_v17_second_mdev_leaves_data_alone() -> None:
    st = run("v17", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("open_device", {"mdev": 1, "vm": 0})])
    assert st["t0.ret"] == "0"  # set_kvm's -EPERM, dropped by the group notifier's registration
    assert st["mdev1.kvm"] == "NULL"
    assert st["kvm0->arch.crypto.data"] == "mdev0"


def test_pre_dynamic_assign_refused_while_guest_runs() -> None:
    st = run("v16-hook", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("assign_adapter", {"mdev": 0, "apid": 4})])
    assert st["t0.ret"] == "EBUSY"


def test_in_use_refuses_apmask_of_assigned_adapter() -> None:
    st = run("final", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("apmask_store", {"reserve": [3]})])
    assert st["t0.ret"] == "EBUSY"
    assert st["ap_perms.apm"] == "{}"
    assert st["ap_queue[03.0005].driver"] == "vfio_ap"


def test_apmask_moves_free_adapter_to_zcrypt() -> None:
    st = run("final", {**BASE, "matrix": ["mdev0: 3 x 5"]}, [("apmask_store", {"reserve": [4]})])
    assert st["t0.ret"] == "0"
    assert st["ap_queue[04.0005].driver"] == "zcrypt"
    assert st["ap_queue[04.0005].data"] == "host"


def test_pre_dynamic_apmask_takes_queue_from_running_guest() -> None:
    # no in_use before the dynamic series: the queue goes to zcrypt, the CRYCB keeps it
    st = run("v16-hook", {**BASE, "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]},
             [("apmask_store", {"reserve": [3]})])
    assert st["ap_queue[03.0005].driver"] == "zcrypt"
    assert st["kvm0.crycb.apm"] == "{3}"


def test_queue_unbind_unplugs_adapter_from_guest() -> None:
    st = run("final", {"vms": 1, "mdevs": 1, "matrix": ["mdev0: 3 x 5,6"], "attached": ["mdev0 -> kvm0"]},
             [("unbind_queue", {"apid": 3, "apqi": 5})])
    assert st["kvm0.crycb.apm"] == "{}"  # the whole APID goes (f009cfa46655)
    assert st["ap_queue[03.0006].data"] == "clean"


def test_v17_hook_registration() -> None:
    st = run("v17", {"vms": 1, "mdevs": 1}, [("hook_register_other", {})])
    assert st["t0.ret"] == "EACCES"  # vfio_ap registered at load
    st = run("v17", {"vms": 1, "mdevs": 1}, [("vfio_ap_exit", {}), ("hook_register_other", {}), ("vfio_ap_init", {})])
    assert st["kvm_s390.pqap_hook"] == "other_driver"
    assert st["t0.ret"] == "EACCES"


def test_scenario_errors_name_the_key() -> None:
    d = DESIGNS["final"]
    sc = Scenario("t", "final", "", {"vms": 1}, [ThreadSpec("a", [OpCall("assign_adapter", {"mdev": 0, "apid": 9})])])
    with pytest.raises(ScenarioError) as e:
        d.build(sc)
    assert e.value.key == "threads.0.run.0.apid"
    sc = Scenario("t", "v16-hook", "", {}, [ThreadSpec("a", [OpCall("adapter_standby", {"apid": 3})])])
    with pytest.raises(ScenarioError):
        DESIGNS["v16-hook"].build(sc)


def test_registered_names() -> None:
    assert {"v15", "v16", "v16-hook", "v17", "v17-data-before-put", "final"} <= set(DESIGNS)


def test_aqmask_in_use_and_reprobe() -> None:
    st = run("final", {**BASE, "domains": [5, 6], "matrix": ["mdev0: 3 x 5"], "aqmask": []},
             [("aqmask_store", {"reserve": [5]}), ("aqmask_store", {"reserve": [6]})])
    # apmask is empty, so nothing is reserved whatever aqmask says; both stores succeed, nothing moves
    assert st["t0.ret"] == "0" and st["ap_perms.aqm"] == "{5,6}"
    st = run("final", {**BASE, "domains": [5, 6], "apmask": [3, 4], "aqmask": [], "matrix": ["mdev0: 3 x 5"]},
             [("aqmask_store", {"reserve": [6]}), ("aqmask_store", {"reserve": [5]})])
    assert st["ap_queue[03.0006].driver"] == "zcrypt"  # 6 was free: moved to zcrypt
    assert st["t0.ret"] == "EBUSY"  # 03.0005 is assigned to mdev0
    assert st["ap_perms.aqm"] == "{6}"


def test_open_without_crycb_sets_nothing() -> None:
    # [S-v10]: v4.20's open failed without a CRYCB; every modelled era (v15 ... final) sets nothing, returns 0
    for design in ("final", "v16-hook", "v17", "v15", "v16", "v17-data-before-put"):
        st = run(design, {**BASE, "matrix": ["mdev0: 3 x 5"], "no_crycb": [0]}, [("open_device", {"mdev": 0, "vm": 0})])
        assert st["t0.ret"] == "0"
        assert st["mdev0.kvm"] == "NULL"
        assert st["kvm0.crycb.apm"] == "{}"


def test_init_without_ap_instructions_is_enodev() -> None:
    st = run("v17", {"vms": 1, "mdevs": 1, "module_loaded": False, "ap_instructions": False},
             [("vfio_ap_init", {})])
    assert st["t0.ret"] == "ENODEV"
    assert st["vfio_ap.loaded"] == "false"
    assert st["kvm_s390.pqap_hook"] == "NULL"


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_init_without_ap_instructions_registers_nothing(design: str) -> None:
    # vfio_ap_init: !ap_instructions_available() -> -ENODEV; no hook, no mdev parent: mdev create fails
    st = run(design, {"vms": 1, "mdevs": 1, "created": [], "module_loaded": False, "ap_instructions": False},
             [("vfio_ap_init", {}), ("mdev_create", {"mdev": 0})])
    assert st["t0.ret"] == "ENODEV"  # of the mdev create too: no parent device to create it under
    assert st["vfio_ap.loaded"] == "false"
    assert st["mdev0.state"] == "unborn"
    assert all(v == "NULL" for k, v in st.items() if k.endswith("pqap_hook") or k.endswith("crypto.data"))
    st = run(design, {"vms": 1, "mdevs": 1, "created": [], "module_loaded": False},
             [("vfio_ap_init", {}), ("mdev_create", {"mdev": 0})])
    assert st["t0.ret"] == "0" and st["vfio_ap.loaded"] == "true"
    assert st["mdev0.state"] != "unborn"


@pytest.mark.parametrize("design", ["v15", "v16", "v16-hook", "v17", "final"])
def test_pqap_with_apie_off_is_eopnotsupp(design: str) -> None:
    # priv.c handle_pqap: !(vcpu->arch.sie_block->eca & ECA_APIE) -> -EOPNOTSUPP to QEMU
    st = run(design, {"vms": 1, "mdevs": 1}, [("set_apie", {"vm": 0, "on": False}), ("kvm_run", {"vm": 0}),
                                               ("set_apie", {"vm": 0, "on": True})])
    assert st["t0.ret"] == "0"
    assert st["kvm0->arch.crypto.apie"] == "true" and st["kvm0.vcpu0->sie_block->eca.APIE"] == "true"
    st = run(design, {"vms": 1, "mdevs": 1, "apie_off": [0]}, [("kvm_run", {"vm": 0})])
    assert st["t0.ret"] == "EOPNOTSUPP"
    st = run(design, {"vms": 1, "mdevs": 1, "apie_off": [0]}, [("set_apie", {"vm": 0, "on": True}),
                                                               ("kvm_run", {"vm": 0})])
    assert st["t0.ret"] == "0"


@pytest.mark.parametrize("design", ["v15", "v16"])
def test_v15_v16_in_use_refuses_assigned_adapter(design: str) -> None:
    # in_use = trylock(matrix_dev->lock){verify_no_sharing} under ap_perms_mutex (kernel-facts §2(b)/(c))
    st = run(design, {"vms": 1, "mdevs": 1, "matrix": ["mdev0: 3 x 5,6"], "attached": ["mdev0 -> kvm0"]},
             [("apmask_store", {"reserve": [3]})])
    assert st["t0.ret"] == "EBUSY" and st["ap_perms.apm"] == "{}"
    assert st["ap_queue[03.0005].driver"] == "vfio_ap"
    st = run(design, {"vms": 1, "mdevs": 1, "matrix": ["mdev0: 3 x 5,6"], "attached": ["mdev0 -> kvm0"]},
             [("apmask_store", {"reserve": [4]})])
    assert st["t0.ret"] == "0" and st["ap_queue[04.0005].driver"] == "zcrypt"


@pytest.mark.parametrize("design", ["v15", "v16"])
def test_v15_v16_unbind_unplugs_and_resets(design: str) -> None:
    # vfio_ap_mdev_remove_queue: unlink; refresh (APID 3 filtered: 03.0005 no longer bound) -> set_masks; reset
    st = run(design, {"vms": 1, "mdevs": 1, "matrix": ["mdev0: 3 x 5,6"], "attached": ["mdev0 -> kvm0"]},
             [("unbind_queue", {"apid": 3, "apqi": 5})])
    assert st["ap_queue[03.0005].driver"] == "none"
    assert st["ap_queue[03.0005].data"] == "clean"
    assert st["kvm0.crycb.apm"] == "{}"


def test_enable_apie_without_ap_instructions_is_eopnotsupp() -> None:
    st = run("final", {"vms": 1, "mdevs": 1, "ap_instructions": False}, [("set_apie", {"vm": 0, "on": True})])
    assert st["t0.ret"] == "EOPNOTSUPP" and st["kvm0->arch.crypto.apie"] == "false"
