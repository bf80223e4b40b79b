"""Infidelities of the design eras (each test failed on the tree before its fix, main at 3ed977b).

A. v5.15 - v5.18 and the v17/v18 postings open an mdev through the group notifier: set_kvm's -EPERM (another
   mdev has this KVM) is dropped by vfio_register_group_notifier, as before 5.15 (test_false_reports test_13).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.lang.program_types import LIFECYCLE
from checker.search.progmodel import ProgramModel
from tests.test_false_reports import executed, field, only_run, run

SECOND_MDEV = """
name: second-mdev
design: "{design}"
constants: {{vms: 1, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: qemu
    run: [{ops}]
"""
OPEN1 = "{open_device: {mdev: 1, vm: 0}}"
CLOSE1 = "{close_device: {mdev: 1}}"
REMOVE1 = "{mdev_remove: {mdev: 1}}"
ALIVE, FREED = LIFECYCLE.index("alive"), LIFECYCLE.index("freed")


def stuck(program: object) -> tuple[int, list[str]]:
    """Run a one-thread scenario until no step is enabled: (that state, the functions run), the run
    unfinished."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    s, fns = model.init_states()[0], []
    while out := model.successors(s):
        (aid, s), = out
        assert s >= 0
        fns.append(program.actions[aid].function)  # type: ignore[attr-defined]
    assert not model.is_done(s)
    return s, fns


@pytest.mark.parametrize("design", ["5.15", "v16-hook", "v17", "v18"])
def test_a_notifier_eperm_does_not_fail_the_open(design: str, tmp_path: Path) -> None:
    """VFIO_GROUP_GET_DEVICE_FD of mdev1 for kvm0, which mdev0 has: vfio_ap_mdev_set_kvm returns -EPERM to
    the group notifier (NOTIFY_DONE), vfio_register_group_notifier returns 0 whatever the replay returned,
    open_device returns 0: the fd is open (open_count 1) and no KVM is attached. The model failed the open
    with -EPERM and open_count 0 (right only for v5.19, whose open_device returns set_kvm's error)."""
    _, program = run(tmp_path, SECOND_MDEV.format(design=design, ops=OPEN1))
    end = only_run(program)
    got = (field(program, "qemu.ret", end), field(program, "mdev1.vfio_device.open_count", end),
           field(program, "mdev1.kvm", end), field(program, "mdev0.kvm", end))
    assert got == (0, 1, -1, 0), got
    texts = [text for fn, text in executed(program) if fn == "vfio_device_open"]
    assert texts[-1] == ("set_kvm -EPERM, NOTIFY_DONE; vfio_register_group_notifier ignores the replay's result: "
                         "the open returns an fd with no KVM (open_count stays); mutex_unlock"), texts


@pytest.mark.parametrize("design", ["5.15", "v17", "v18"])
def test_a_mdev_remove_waits_for_the_close_of_that_fd(design: str, tmp_path: Path) -> None:
    """The fd of that open keeps the vfio device: vfio_unregister_group_dev waits until it is closed (the
    one thread that would close it is the remover: it waits for ever, as the kernel's remove does). With
    the close first, the remove goes through and frees mdev1. (The model returned the open's count with
    its -EPERM: the remove passed at once.)"""
    _, program = run(tmp_path, SECOND_MDEV.format(design=design, ops=f"{OPEN1}, {REMOVE1}"))
    s, fns = stuck(program)
    assert fns[-1] == "vfio_device_open" and "vfio_unregister_group_dev" not in fns, fns
    assert (field(program, "mdev1.vfio_device.open_count", s), field(program, "mdev1.state", s)) == (1, ALIVE)
    _, program = run(tmp_path, SECOND_MDEV.format(design=design, ops=f"{OPEN1}, {CLOSE1}, {REMOVE1}"))
    end = only_run(program)
    assert (field(program, "qemu.ret", end), field(program, "mdev1.vfio_device.open_count", end)) == (0, 0)
    assert (field(program, "mdev1.state", end), field(program, "mdev0.state", end)) == (FREED, ALIVE)


CDOMS = """
name: unassign-control-domain
design: "{design}"
constants: {{vms: 1, mdevs: 1, domains: [5, 6], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: admin
    run: [{{assign_control_domain: {{mdev: 0, apqi: 5}}}}, {{assign_control_domain: {{mdev: 0, apqi: 6}}}},
          {{unassign_control_domain: {{mdev: 0, apqi: 5}}}}]
"""


@pytest.mark.parametrize("design", ["final", "6.2", "mainline", "v18", "v17"])
def test_b_unassign_control_domain_clears_the_shadow_bit(design: str, tmp_path: Path) -> None:
    """B. v6.x unassign_control_domain_store: clear the adm bit; if the shadow APCB has it, clear it there and
    vfio_ap_mdev_update_guest_apcb -- no re-filter (v18 07/18 on). The model re-filtered (shadow adm = adm &
    host config), which is v17 09/15's code. In the model the two agree on every state (the host's control
    domains never change, so shadow adm == adm & host config always): the step's text is what differs."""
    from tests.test_false_reports import shown

    _, program = run(tmp_path, CDOMS.format(design=design))
    end = only_run(program)
    adm = (field(program, "mdev0.shadow_apcb.adm", end), field(program, "kvm0.crycb.adm", end))
    assert adm == (0b10, 0b10)  # domain 6 (the second of the spec's domains)
    unassign = [text for fn, text in shown(program) if fn == "unassign_control_domain_store"
                and not text.startswith(("mutex_lock(", "down_"))]
    what = "shadow adm = adm & host config" if design == "v17" else "shadow adm has it: clear it there"
    assert unassign == [f"clear adm bit; {what}; vfio_ap_mdev_update_guest_apcb; release_update_locks_for_mdev"], \
        unassign
