"""Design ``mainline``: 6.8 with the vfio_ap follow-up fixes of 2026 (kernel-facts §5).

- "s390/vfio-ap: Fix dereference matrix_mdev->kvm without checking for NULL" (b01818641bef in one stable
  tree; kvms390 tree): vfio_ap_mdev_cfg_remove and vfio_ap_mdev_hot_plug_cfg take kvm->lock only for an
  mdev with a guest and still update its shadow (the diff was not read: this is the reading that adds no
  new failure) -- hunks ``vfio_ap_mdev_cfg_remove:visit`` and ``vfio_ap_mdev_hot_plug_cfg:lock_kvm``.
- "s390/vfio-ap: fix stale pqap_hook pointer on error in vfio_ap_mdev_set_kvm()" (bc833a7b1e7f in the
  kvms390 tree): the -EPERM path no longer leaves kvm->arch.crypto.pqap_hook naming this mdev. The diff was
  not read; modelled as: publish remembers the pointer it replaced, and the error path puts it back under
  pqap_hook_rwsem if the hook still names this mdev (hunks ``:publish_hook`` and ``:error``).
Not modelled (no state for them): "Fix control domain removal in vfio_ap_mdev_cfg_remove" and "Fix stale
do_remove flag across iterations" (control-domain bookkeeping), "Fix NULL deref in status_show()", "fix
potential use of uninitialized apm_filtered bitmap". docs/designs/mainline.md.
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, Not
from checker.lang.program import Lock

from ..kernel.ap_bus import AP_BUS
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Body
from .linux_6_8 import LINUX_6_8


@kernel(OPS, name="vfio_ap_mdev_cfg_remove:visit")
def cfg_remove_visit_checked(k: K, m: int) -> tuple[Expr, Expr, str, list[tuple[Expr | None, str]]]:
    """if (matrix_mdev->kvm) mutex_lock(&matrix_mdev->kvm->lock); the shadow is still updated (assumption:
    the fix's diff was not read; skipping the mdev instead would leave a removed adapter in the shadow of
    an mdev without a guest, which set_kvm would then hand to the next guest)."""
    alive = k.w.mdev_alive(m)
    guest = And(alive, k.w.mkvm[m].var != -1)
    return alive, guest, "if (matrix_mdev->kvm) mutex_lock(&matrix_mdev->kvm->lock)", [
        (Not(alive), "not on mdev_list"), (And(alive, Not(guest)), "matrix_mdev->kvm == NULL: no kvm->lock"),
        (guest, "mutex_lock(&matrix_mdev->kvm->lock)")]


@kernel(OPS, name="vfio_ap_mdev_hot_plug_cfg:lock_kvm")
def hot_plug_cfg_lock_checked(k: K, m: int, skip: str) -> Expr:
    """With the NULL check: kvm->lock only for an mdev with a guest (assumption: the fix treats
    vfio_ap_mdev_hot_plug_cfg like cfg_remove; its diff was not read)."""
    w = k.w
    mk = w.mkvm[m].var
    pend = w.pending[m].var
    guest = And(pend, mk != -1)
    k.lock(w.KL, "vfio_ap_on_scan_complete", when=guest, index=mk, jumps=[(Not(pend), skip)],
           text=f"mdev{m}: nothing added to it: continue; if (matrix_mdev->kvm) mutex_lock(&kvm->lock)",
           branches=[(Not(pend), f"mdev{m}: nothing added to it: continue"),
                     (And(pend, mk == -1), f"mdev{m}: matrix_mdev->kvm == NULL: no kvm->lock"),
                     (guest, f"mdev{m}: mutex_lock(&matrix_mdev->kvm->lock)")])
    return guest


@kernel(OPS, name="vfio_ap_mdev_set_kvm:publish_hook")
def publish_hook_remembering(k: K, mdev: int, vm: int) -> None:
    """down_write(pqap_hook_rwsem); remember the pointer; kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook;
    up_write."""
    w = k.w
    k.lock(w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    b = Body()
    b.set(k.local("old_hook", w.mslots), w.hook[vm].var)
    b.set(w.hook[vm], mdev)
    k.unlock("vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
             text="old = kvm->arch.crypto.pqap_hook; kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; up_write")


@kernel(OPS, name="vfio_ap_mdev_set_kvm:error")
def restore_hook_on_error(k: K, mdev: int, vm: int) -> None:
    """-EPERM: down_write(pqap_hook_rwsem); if the hook still names this mdev, put the old pointer back."""
    w = k.w
    old = k.local("old_hook", w.mslots)
    k.lock(w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    b = Body()
    b.set(w.hook[vm], old.var, when=w.hook[vm].var == mdev)
    b.set(old, -1)
    mine = w.hook[vm].var == mdev
    k.unlock("vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
             text="-EPERM: if (pqap_hook == &matrix_mdev->pqap_hook) pqap_hook = old; up_write",
             branches=[(mine, "-EPERM: pqap_hook == &matrix_mdev->pqap_hook: pqap_hook = old"),
                       (Not(mine), "-EPERM: pqap_hook no longer this mdev's: left as is"), (None, "up_write")])


@kernel(AP_BUS, name="ap_scan_bus:serialise")
def scan_bus_mutex(k: K) -> tuple[Lock, str, str]:
    """Since v6.9 (eacf5b3651c5) every ap_scan_bus runs under ap_scan_bus_mutex, taken by its caller
    (ap_scan_bus_wq_callback, ap_bus_force_rescan) before the scan and released after it."""
    lk, _ = k.w.ap_scan("ap_scan_bus_mutex")
    return lk, "mutex_lock(&ap_scan_bus_mutex)", "mutex_unlock(&ap_scan_bus_mutex)"


MAINLINE = LINUX_6_8.derive(
    "mainline",
    "6.8 + the 2026 vfio_ap fixes: NULL check of matrix_mdev->kvm in cfg_remove/hot_plug_cfg, no stale "
    "pqap_hook after -EPERM (kernel-facts §5 C1, C2)",
    override=[cfg_remove_visit_checked, hot_plug_cfg_lock_checked, publish_hook_remembering, restore_hook_on_error,
              scan_bus_mutex],
    commits=("bc833a7b1e7f", "b01818641bef"), doc="docs/designs/mainline.md")
