"""Design ``5.15-pre``: 5.12 with 1e753732bda6 "r/w lock for PQAP interception handler function pointer" applied
and 86956e70761b "replace open coded locks for VFIO_GROUP_NOTIFY_SET_KVM notification" not yet (kernel-facts
§2(a3)): priv.c calls the hook under ``kvm->arch.crypto.pqap_hook_rwsem`` (read); set_kvm publishes the hook
under it (write) after dropping matrix_dev->lock with ``kvm_busy`` set, unset_kvm clears it the same way;
the rest is 5.12's. docs/designs/5.15-pre.md.
"""

from __future__ import annotations

from checker.lang.expr import Expr

from ..kernel import kvm, vfio_ap_ops
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Body, Era
from .linux_5_12 import LINUX_5_12


@kernel(OPS, name="vfio_ap_mdev_set_kvm:hook_under_lock")
def no_hook_under_lock(k: K, b: Body, mdev: int, vm: int) -> str:
    """a3: the hook was published under pqap_hook_rwsem (hunk :publish_hook), not under matrix_dev->lock."""
    return ""


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:clear_hook")
def clear_hook_rwsem(k: K, kv: Expr) -> None:
    """a3: with kvm_busy set and matrix_dev->lock dropped: down_write(pqap_hook_rwsem); pqap_hook = NULL; up_write."""
    w = k.w
    k.lock(w.HR, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
    b = Body()
    b.set_at(w.hook, kv, -1)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.HR, None, kv), body=b, text="kvm->arch.crypto.pqap_hook = NULL; up_write")


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:hook_under_lock")
def no_unset_under_lock(k: K, b: Body, kv: Expr) -> str:
    """a3: the hook was cleared under pqap_hook_rwsem (hunk :clear_hook)."""
    return ""


LINUX_5_15_PRE = LINUX_5_12.derive(
    "5.15-pre",
    "5.12 + 1e753732bda6 (pqap_hook under pqap_hook_rwsem), before 86956e70761b (kvm_busy still there)",
    era=Era(dynamic=False, hook="rwsem", busy=True, matrix_lock="matrix_dev->lock", guests_lock="",
            vfio_lock=False, vfio_kvm_ref=False),
    override=[kvm.handle_pqap, vfio_ap_ops.publish_hook, no_hook_under_lock, clear_hook_rwsem, no_unset_under_lock],
    commits=("1e753732bda6",), doc="docs/designs/5.15-pre.md")
