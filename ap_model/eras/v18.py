"""Design ``v18``: the dynamic-configuration series v18 (2022), v17 without patch 01 -- before v19's in-use
rework (kernel-facts §2(d) outcome, §4 item 8).

v18 dropped v17 01/15 (back to the per-KVM hook under ``pqap_hook_rwsem``, as 5.15 and 6.x), replaced the
guests list by a global mutex (``guests_lock``, then named kvm_lock) with the order guests_lock ->
kvm->lock -> matrix_dev->lock for every guest update, and kept the group notifier (pre-6.0 vfio, no vfio
core kvm reference). Settled from kernel-facts, the v17/v18 threads and the v19 fix (not from v18's diff):

- assign takes ``ap_perms_mutex`` inside validation, after the update locks
  (``ap_apqn_in_matrix_owned_by_def_drv`` locked it), and ``in_use`` takes guests_lock -> matrix_dev->lock
  with ``mutex_lock`` under the AP bus's ap_perms_mutex: Halil's ABBA deadlock, fixed by "[PATCH v19
  15/20] s390/vfio-ap: implement in-use callback" (the helpers no longer lock ap_perms_mutex; assign takes it
  first). That v18 no longer used v12-v17's mutex_trylock is inferred from the fix landing in v19.
- ``vfio_ap_mdev_cfg_remove`` skips an mdev without a guest (``if (!matrix_mdev->kvm) continue;``, C2).
- no reset of filtered APIDs, unbind resets only the queue (as 6.2).
Derived from 6.8 with 5.15's notifier open/close and 6.2's filter/unbind. docs/designs/v18.md.
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import And, Expr, Not

from ..kernel.catalog import operations
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Era
from .linux_5_15 import kvm_vfio_group_del_5_15, open_entry, vfio_device_close_5_15, vfio_device_open_notifier
from .linux_6_2 import filter_matrix_no_reset, remove_queue_unplug_only
from .linux_6_8 import LINUX_6_8
from .v17 import no_store_bypass


@kernel(OPS, name="assign_store:lock")
def assign_lock_v18(k: K, fn: str, mk: Expr | int) -> None:
    """The update locks, then ap_perms_mutex inside vfio_ap_mdev_validate_masks ->
    ap_apqn_in_matrix_owned_by_def_drv (which locks it itself before v19)."""
    k.call("get_update_locks_for_mdev", fn=fn, mk=mk)
    k.lock(k.w.P, "ap_apqn_in_matrix_owned_by_def_drv")


@kernel(OPS, name="assign_store:unlock")
def assign_unlock_v18(k: K, mk: Expr | int) -> list[tuple[Any, ...]]:
    """ap_perms_mutex, then the update locks."""
    return [(k.w.P, None, None), *k.call("release_update_locks_for_mdev", mk=mk)]


@kernel(OPS, name="vfio_ap_mdev_cfg_remove:visit")
def cfg_remove_visit_v18(k: K, m: int) -> tuple[Expr, Expr, str, list[tuple[Expr | None, str]]]:
    """if (!matrix_mdev->kvm) continue; mutex_lock(&matrix_mdev->kvm->lock)."""
    alive = k.w.mdev_alive(m)
    guest = And(alive, k.w.mkvm[m].var != -1)
    return guest, guest, "if (!matrix_mdev->kvm) continue; mutex_lock(&matrix_mdev->kvm->lock)", [
        (Not(alive), "not on mdev_list"), (And(alive, Not(guest)), "matrix_mdev->kvm == NULL: continue"),
        (guest, "mutex_lock(&matrix_mdev->kvm->lock)")]


V18 = LINUX_6_8.derive(
    "v18",
    "v18 series (2022): v17 without 01/15 (per-KVM rwsem hook), guests_lock mutex -> kvm->lock -> "
    "matrix_dev->lock, group notifier; assign takes ap_perms_mutex inside validation (before v19 15/20)",
    era=Era(dynamic=True, hook="rwsem", busy=False, matrix_lock="matrix_dev->lock", guests_lock="mutex",
            vfio_lock=True, vfio_kvm_ref=False),
    override=[no_store_bypass, assign_lock_v18, assign_unlock_v18, cfg_remove_visit_v18, vfio_device_open_notifier,
              vfio_device_close_5_15, filter_matrix_no_reset, remove_queue_unplug_only],
    add=[open_entry, kvm_vfio_group_del_5_15],
    operations=operations("kvm_vfio_group_del"), doc="docs/designs/v18.md")
