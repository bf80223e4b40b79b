"""Lemmas of object lifetimes that the check groups need for any number of threads (``apcheck prove
--parametric --property check:memory-safety``; PARAMETRIC_LEMMAS entries, stated for the universal scenario
only, as the others).

- ``lemma-vm-ioctl-fd``: a VM ioctl (set_apie, pv_switch) holds the VM fd's file from its fdget to its fdput
  (``kvmV.vm_fd`` is "ioctl" there: ap_model/kernel/kvm.py ``_vm_ioctl_lock``), so the fd's close, which
  waits for it (the file's last fput), cannot drop the fd's kvm reference meanwhile; and the fd is closed
  exactly from its close on (no ioctl reopens it); KVM_RUN, holding vcpu->mutex, finds its vCPU fd open
  (kvm_vcpu_release waits for the mutex). The model's one value stands for the file's count; kvm->lock, held
  by the ioctl all along, makes it exact.
- ``lemma-store-active``: a write to an mdev's sysfs attribute holds ``kn->active`` (read) from
  kernfs_get_active to kernfs_put_active and finds the files not yet removed; the mdev is freed only after
  its remove drained them (ap_model/kernel/kernfs.py), exactly from that remove's free on (an mdev is removed
  once: universal_once), so a store never reaches a freed mdev.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checker.lang.expr import And, Bin, Const, Expr, Implies, Ite, Not, Var, children
from checker.lang.layout import Field
from checker.lang.program import FREED, Program

from .properties import FD_RELEASES, _add, _at
from .world import VM_FD

if TYPE_CHECKING:
    from .world import World

IOCTL, OPEN, CLOSED = VM_FD.index("ioctl"), VM_FD.index("open"), VM_FD.index("closed")


def _is_const(e: Expr | None, value: int) -> bool:
    return isinstance(e, Const) and e.value == value


def _sets(e: Expr, value: int) -> bool:
    """The update ``e`` can store ``value`` (a constant somewhere in its If tree)."""
    if isinstance(e, Const):
        return e.value == value
    return any(_sets(c, value) for c in children(e))


def add_lifetime_lemmas(w: World, program: Program) -> None:
    fd: list[Expr] = []
    for f in w.vm_fd.values():
        for a in program.actions:
            if f not in a.updates or not _sets(a.updates[f], IOCTL):
                continue  # not a VM ioctl's fdget
            puts = [c.label for c in program.actions if c.thread == a.thread and c.label > a.label
                    and _is_const(c.updates.get(f), OPEN)]
            if puts:
                fd.append(Implies(_at(program, (a.thread, list(range(a.label + 1, min(puts) + 1)))),
                                  f.var == IOCTL))
    # close(vm fd), close(vcpu fd): the fd is closed from its close's step on, and only from there (the count of
    # lemma-kvm-refs follows the close thread's pc; the fd's state is what the ioctls test)
    closes = [*[(f, CLOSED) for f in w.vm_fd.values()], *[(f, True) for f in w.vcpu_fd_closed.values()]]
    for f, closed in closes:
        for a in program.actions:
            if a.function in FD_RELEASES and isinstance(a.updates.get(f), Const):
                pc = program.threads[a.thread].pc.var
                fd += [Implies(pc > a.label, f.var == closed), Implies(pc <= a.label, f.var != closed)]
    # KVM_RUN holds its vCPU fd's file while it holds vcpu->mutex (kvm_vcpu_release waits for the mutex)
    for (v, c), f in w.vcpu_fd_closed.items():
        lk = w.VM[v][c]
        for a in program.actions:
            if a.function != "kvm_vcpu_ioctl" or not any(q.lock is lk for q in a.acquires):
                continue
            rel = [x.label for x in program.actions if x.thread == a.thread and x.label > a.label
                   and any(r is lk for r, _ in x.releases)]
            if rel:
                fd.append(Implies(And(_at(program, (a.thread, list(range(a.label + 1, min(rel) + 1)))),
                                      lk.owner.var == a.thread + 1), Not(f.var)))
    _add(program, "lemma-vm-ioctl-fd", And(*fd),
         "a VM ioctl holds the VM fd's file from its fdget to its fdput: the fd is not closed meanwhile; the fd "
         "is closed exactly once its close has run",
         "ioctl(2) fdget/fdput; kvm_vm_release runs at the file's last fput")
    act: list[Expr] = []
    for m in w.mdevs:  # vfio_ap_mdev_remove frees the mdev, once (universal_once): freed exactly from there on
        writers = [a for a in program.actions if w.mdev.state[m] in a.updates]
        for a in writers:
            e = a.updates[w.mdev.state[m]]
            if isinstance(e, Const) and e.value == FREED and len(writers) == 1:  # no create brings it back
                pc = program.threads[a.thread].pc.var
                act += [Implies(pc > a.label, w.mdev.state[m].var == FREED),
                        Implies(pc <= a.label, w.mdev.state[m].var != FREED)]
    for m, kn in w.KN.items():
        gone = w.sysfs_gone[m].var
        writers = [a for a in program.actions if w.sysfs_gone[m] in a.updates]
        for a in writers:  # the remove's drain: the files are gone from there on (where no create adds them back)
            e = a.updates[w.sysfs_gone[m]]
            if isinstance(e, Const) and bool(e.value) and len(writers) == 1:
                act.append(Implies(program.threads[a.thread].pc.var > a.label, gone))
        act.append(Implies(w.mdev.state[m].var == FREED, gone))  # vfio_ap_mdev_remove frees after the drain
        act += [Implies(bit.var == 1, Not(gone)) for bit in kn.readers.values()]  # a write in progress
    _add(program, "lemma-store-active", And(*act),
         "a write to an mdev's sysfs attribute in progress finds its files not removed; an mdev is freed only "
         "after its remove removed them (kernfs_drain waits for the writes in progress)",
         "kernfs_fop_write_iter (kernfs_get_active / put_active); device_del -> device_remove_groups -> kernfs_drain")


def jumps_on_null(target: Expr, f: Field, span: list[int]) -> bool:
    """Every way of ``target`` into ``span`` passes a test that ``f`` is not NULL (-1)."""
    if isinstance(target, Const):
        return int(target.value) not in span
    if not isinstance(target, Ite):
        return False
    c = target.c
    if isinstance(c, Bin) and isinstance(c.a, Var) and c.a.field is f and isinstance(c.b, Const) and c.b.value == -1:
        if c.op in ("==", "!="):
            null_side = target.a if c.op == "==" else target.b  # the other side runs with f set
            return jumps_on_null(null_side, f, span) or _all_outside(null_side, span)
    return jumps_on_null(target.a, f, span) and jumps_on_null(target.b, f, span)


def _all_outside(e: Expr, span: list[int]) -> bool:
    if isinstance(e, Const):
        return int(e.value) not in span
    return isinstance(e, Ite) and _all_outside(e.a, span) and _all_outside(e.b, span)
