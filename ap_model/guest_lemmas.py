"""The kvm reference count, stated guest by guest, for proofs over any number of guests.

``lemma-kvm-refs`` sums, for each struct kvm, the references of every mdev attached to it: a sum over the
mdevs, which no quantifier over a pool of any size expresses (docs/prove.md, "all sizes"). In a scenario where
each mdev k is attached to kvm k (``universal.sized_constants``: a guest is a VM with its mdev), only the
guest's own mdev holds its kvm, so the count is a statement about one guest:

``lemma-kvm-guest-refs``: kvm k's count is at least its VM fd's reference while that fd is open, its vCPU fds'
while open, mdev k's (vfio_ap's, matrix_mdev->kvm) and the vfio core's for mdev k (6.2+); a struct kvm with a
reference is alive; no other mdev holds kvm k. The fds are counted by their state: the close sets "closed" in
the step that drops the reference (kvm_vm_release / kvm_vcpu_release; a second close returns -EBADF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checker.lang.expr import And, Expr, If, Implies, Not
from checker.lang.program import Program

from .properties import _add
from .world import VM_FD

if TYPE_CHECKING:
    from .world import World

CLOSED = VM_FD.index("closed")
# apcheck prove --parametric --all-sizes (KernelDesign.pool_lemmas / pool_unstated): the parametric lemmas with
# the count over every mdev restated guest by guest
POOL_UNSTATED = ("lemma-kvm-refs",)


def guest_paired(w: World) -> bool:
    """Every mdev k is attached to kvm k, and there are as many of each."""
    return len(w.vms) == len(w.mdevs) and all(w.cfg.attached.get(m) == m for m in w.mdevs)


def add_guest_refs_lemma(w: World, program: Program) -> None:
    if w.kvm.refs is None or not guest_paired(w):
        return
    terms: list[Expr] = []
    for v in w.vms:
        held: Expr = If(w.mkvm[v].var == v, 1, 0)
        if w.vkvm:
            held = held + If(w.vkvm[v].var == v, 1, 0)
        if v in w.vm_fd:
            held = held + If(w.vm_fd[v].var != CLOSED, 1, 0)
        for (vv, _), f in w.vcpu_fd_closed.items():
            if vv == v:
                held = held + If(Not(f.var), 1, 0)
        terms += [w.kvm.refs[v].var >= held, Implies(w.kvm.refs[v].var > 0, w.kvm_alive(v))]
        for m in w.mdevs:
            if m != v:
                terms.append(w.mkvm[m].var != v)
                if w.vkvm:
                    terms.append(w.vkvm[m].var != v)
    _add(program, "lemma-kvm-guest-refs", And(*terms),
         "a struct kvm holds a reference for its guest's mdev attached to it, the vfio device open on it and its "
         "VM and vCPU fds while open; a struct kvm with a reference is alive; no other guest's mdev holds it",
         "vfio_ap_mdev_set_kvm / unset_kvm (kvm_get_kvm / kvm_put_kvm); vfio_device_get_kvm_safe / put_kvm; "
         "kvm_vm_release / kvm_vcpu_release")
