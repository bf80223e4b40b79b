"""The VM fd's lifetime: a VM ioctl in flight holds the struct file, so the close's kvm_put_kvm waits for it,
and a VM ioctl after the close fails in fdget with -EBADF (docs/designs/world.md, "A VM fd's lifetime").

Before, close_vm_fd put the VM fd's kvm reference at once and set_apie / pv_switch used the struct kvm with
no regard for the fd: with the other references gone, "use after free of struct kvm kvm0: kvm->lock" (12
steps on mainline, 10 on 5.12), which the kernel's file reference rules out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ap_model.world import VM_FD, E
from checker.prove.parametric.lift import Lifting
from checker.search.progmodel import ProgramModel
from checker.search.reduce.symmetry import symmetry_for
from checker.search.run import build_program
from checker.spec.registry import default_registry
from tests.test_false_reports import executed, field, only_run, run, status

CONSTANTS = {1: '{vms: 1, mdevs: 1, domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}',
             2: '{vms: 2, mdevs: 2, domains: [5], matrix: ["mdev0: 3 x 5", "mdev1: 4 x 5"], '
                'attached: ["mdev0 -> kvm0", "mdev1 -> kvm1"]}'}


def spec(name: str, threads: list[str], design: str = "mainline", vms: int = 1) -> str:
    """A spec of ``vms`` VMs, each with its mdev attached, whose threads are ``threads`` (flow mappings)."""
    lines = "".join(f"  - {t}\n" for t in threads)
    return f'name: {name}\ndesign: "{design}"\nconstants: {CONSTANTS[vms]}\nthreads:\n{lines}'


IOCTLS = "{name: qemu_io, run: [{set_apie: {vm: 0, on: false}}, {pv_switch: {vm: 0}}]}"
CLOSES = "{name: qemu, run: [{close_vcpu_fd: {vm: 0}}, {close_vm_fd: {vm: 0}}, {close_device: {mdev: 0}}]}"


@pytest.mark.parametrize(("design", "states", "transitions"), [("mainline", 87, 109), ("5.12", 69, 82)])
def test_vm_fd_closed_while_another_thread_runs_vm_ioctls(design: str, states: int, transitions: int,
                                                          tmp_path: Path) -> None:
    """close(vm fd) in one QEMU thread while another issues KVM_SET_DEVICE_ATTR(APIE) and KVM_S390_PV_COMMAND
    on the same VM: the struct kvm outlives every ioctl that got the file, the later ones get -EBADF. Was
    memory-safety VIOLATED (use after free of struct kvm kvm0: kvm->lock) on both designs."""
    res, _ = run(tmp_path, spec("vm-fd-closed-while-vm-ioctls-run", [IOCTLS, CLOSES], design))
    assert res.result == "HOLDS"
    assert {k: v for k, v in status(res).items() if k in ("deadlock", "lock-order", "memory-safety")} == {
        "deadlock": "HOLDS", "lock-order": "HOLDS", "memory-safety": "HOLDS"}
    assert (res.stats.states, res.stats.transitions) == (states, transitions)


def test_vm_ioctls_on_a_closed_vm_fd_are_ebadf(tmp_path: Path) -> None:
    _, program = run(tmp_path, spec("vm-ioctls-after-close", [
        "{name: qemu, run: [{close_vm_fd: {vm: 0}}, {set_apie: {vm: 0, on: false}}, {pv_switch: {vm: 0}}]}"]))
    assert executed(program) == [("kvm_vm_release", "kvm_put_kvm (VM fd)"),
                                 ("kvm_s390_vm_set_crypto", "mutex_lock(kvm0->lock)"),  # fdget fails here
                                 ("kvm_s390_handle_pv", "mutex_lock(kvm0->lock)"),  # and here
                                 ("syscall_exit", "return to user space")]
    end = only_run(program)
    assert field(program, "qemu.ret", end) == E["EBADF"]
    assert field(program, "kvm0.vm_fd", end) == VM_FD.index("closed")
    assert field(program, "kvm0->arch.crypto.apie", end) == 1  # DISABLE_APIE never ran
    assert field(program, "kvm0.refs", end) == 3  # only the VM fd's reference went (vCPU fd, mdev, vfio core)


def _reachable(program: object) -> list[int]:
    model = ProgramModel(program)  # type: ignore[arg-type]
    seen = list(model.init_states())
    todo = list(seen)
    while todo:
        s = todo.pop()
        for _, t in model.successors(s):
            assert t >= 0, model.violation(-1 - t)
            if t not in seen:
                seen.append(t)
                todo.append(t)
    return seen


def test_the_close_waits_for_the_ioctl_in_flight(tmp_path: Path) -> None:
    """Every interleaving of one DISABLE_APIE with the close: while the ioctl holds the file the close cannot
    run (kvm_vm_release is not enabled); it ends either done by the ioctl (0) or refused by fdget (-EBADF)."""
    _, program = run(tmp_path, spec("close-against-set-apie", [
        "{name: io, run: [{set_apie: {vm: 0, on: false}}]}", "{name: qemu, run: [{close_vm_fd: {vm: 0}}]}"]))
    model = ProgramModel(program)  # type: ignore[arg-type]
    close = [a.aid for a in program.actions if a.function == "kvm_vm_release"]  # type: ignore[attr-defined]
    states = _reachable(program)
    in_flight = [s for s in states if field(program, "kvm0.vm_fd", s) == VM_FD.index("ioctl")]
    assert len(in_flight) == 1  # the io thread between mutex_lock(kvm->lock) and its return, qemu not yet closed
    assert field(program, "qemu.pc", in_flight[0]) == 0
    assert not [aid for aid, _ in model.successors(in_flight[0]) if aid in close]
    ends = sorted((field(program, "io.ret", s), field(program, "kvm0->arch.crypto.apie", s))
                  for s in states if model.is_done(s))
    assert ends == [(0, 0), (E["EBADF"], 1)]
    # start; ioctl in flight; returned (0); out to user space; the close after each of those two; closed
    # first, then fdget's -EBADF and the return: 9
    assert len(states) == 9


def test_no_vm_fd_field_without_a_vm_ioctl_on_the_closed_fd(tmp_path: Path) -> None:
    """The field exists only where the scenario both closes a VM's fd and runs a VM ioctl on that VM, so the
    other specs' programs are unchanged."""
    _, program = run(tmp_path, spec("ioctl-on-the-other-vm", [
        "{name: io, run: [{pv_switch: {vm: 1}}, {close_vm_fd: {vm: 1}}]}",
        "{name: qemu, run: [{close_vm_fd: {vm: 0}}]}"], vms=2))
    names = [f.name for f in program.layout.fields]  # type: ignore[attr-defined]
    assert [n for n in names if n.endswith(".vm_fd")] == ["kvm1.vm_fd"]


def test_two_vms_closing_their_fds_stay_symmetric(tmp_path: Path) -> None:
    """The VM-group symmetry carries kvmV.vm_fd with the rest of the VM (without it the engine refuses the
    swap: the close's guard would read the other VM's fd)."""
    _, program = run(tmp_path, spec("two-vms-close-against-ioctls", [
        f"{{name: {t}{v}, run: [{{{op}: {{vm: {v}{arg}}}}}]}}"
        for v in (0, 1) for t, op, arg in (("io", "set_apie", ", on: false"), ("qemu", "close_vm_fd", ""))], vms=2))
    sym, why = symmetry_for(program)  # type: ignore[arg-type]
    assert sym is not None, why
    assert len(_reachable(program)) == 81  # 9 x 9: the two VMs are independent


def test_the_parametric_scenario_lifts_the_vm_fd() -> None:
    """``prove --parametric`` (any number of threads issuing VM ioctls): kvmV.vm_fd is one shared field per VM
    and every step reading or writing it lifts by renaming (the close's wait names no other thread)."""
    d = default_registry().get("mainline")
    program = build_program(d, d.universal_scenario({"vms": 2, "mdevs": 2}, ["set_apie", "pv_switch", "close_vm_fd"]))
    lifting = Lifting(program)
    lifting.check_liftable()
    assert sorted(f.name for f in lifting.shared if f.name.endswith(".vm_fd")) == ["kvm0.vm_fd", "kvm1.vm_fd"]


NO_MDEV = "{vms: 1, mdevs: 1}"


@pytest.mark.parametrize(("threads", "counts", "fd"), [
    (["{name: qemu1, run: [{close_vm_fd: {vm: 0}}]}", "{name: qemu2, run: [{close_vm_fd: {vm: 0}}]}",
      "{name: vcpu0, run: [{kvm_run: {vm: 0}}]}"], (30, 41), "VM fd"),
    (["{name: qemu1, run: [{close_vcpu_fd: {vm: 0}}]}", "{name: qemu2, run: [{close_vcpu_fd: {vm: 0}}]}",
      "{name: qemu3, run: [{close_vm_fd: {vm: 0}}]}"], (10, 13), "vCPU 0 fd"),
])
def test_a_second_close_of_one_fd_returns_ebadf(threads: list[str], counts: tuple[int, int], fd: str,
                                                tmp_path: Path) -> None:
    """close(2) twice on one fd: the second finds no file in the fd table and returns -EBADF; no second
    kvm_put_kvm. Before, each close put the fd's reference: with no mdev holding the kvm, the second put of
    the VM fd freed it under the vCPU's KVM_RUN, and two vCPU fd closes freed it before the VM fd's close
    (memory-safety VIOLATED, which the kernel's fd table rules out)."""
    text = spec("double-close", threads).replace(CONSTANTS[1], NO_MDEV)
    res, program = run(tmp_path, text)
    assert status(res)["memory-safety"] == "HOLDS"
    assert (res.stats.states, res.stats.transitions) == counts
    closes = [a for a in program.actions if a.function in ("kvm_vm_release", "kvm_vcpu_release") and a.branches]
    assert [a.branches[0][1] for a in closes] == [f"close({fd}): not open: return -EBADF"] * 2  # the fd closed twice
