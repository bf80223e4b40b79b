"""Designs ``v15`` and ``v16``: the dynamic-configuration series as posted (Apr / May 2021).

``v15`` (kernel-facts §2(b), [S-v15], on (a2) 0cc00c8d4050): one global ``matrix_dev->lock``; the
``kvm_busy`` open-coded lock around set/unset_kvm (dropped while the masks are written); the unlocked
per-mdev PQAP hook; ``kvm_arch_crypto_set_masks`` takes ``kvm->lock`` itself (<= v5.14); hot plug:
assign takes ``matrix_dev->lock`` with ``mutex_trylock`` and updates the guest still holding it -- the
edge Halil's lockdep splat closes into ``vcpu->mutex -> matrix_dev->lock -> kvm->lock -> vcpu->mutex``;
``ap_perms_mutex`` is taken inside validation; in_use is ``mutex_trylock(matrix_dev->lock)``.

``v16`` (§2(c), "v16 08/14"): every hot-plug path commits through ``vfio_ap_mdev_commit_apcb``, which sets
``kvm_busy``, drops ``matrix_dev->lock`` around the masks and re-takes it; probe/remove wait for
``kvm_busy`` first; unassign resets the unplugged queues. Host configuration changes are not modelled for
these two (not retrieved). Both derive from 6.8. docs/designs/v15.md.
"""

from __future__ import annotations

from checker.lang.expr import BOOL, Const, Expr, If, MaskConst, Not

from .. import rules
from ..kernel.catalog import operations
from ..kfunc import K, kernel
from ..world import Body, E, Era
from .linux_5_12 import (
    handle_pqap_module_hook,
    hook_set_under_lock,
    hook_unset_under_lock,
    kvm_arch_crypto_set_masks,
    kvm_vfio_group_del_a2,
    no_publish_hook,
    no_unset_clear_hook,
    open_a2,
    release_a2,
    vfio_ap_handle_pqap_a2,
)
from .linux_6_8 import LINUX_6_8
from .v15_paths import (
    assign_adapter_v15,
    assign_domain_v15,
    commit_v15,
    commit_v16,
    probe_queue_v15,
    probe_queue_v16,
    remove_queue_v15,
    remove_queue_v16,
    unassign_adapter_v15,
    unassign_adapter_v16,
    unassign_domain_v15,
    unassign_domain_v16,
)

SERIES_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
              "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
              "unassign_domain", "set_apie", "vfio_ap_init", "apmask_store", "aqmask_store", "unbind_queue")


def _mask_store_trylock(k: K, kind: str, reserve: list[int], release: list[int]) -> None:
    """``P{ newly reserved -> in_use = trylock(matrix_dev->lock) (fail -> -EBUSY) {verify_no_sharing};
    commit }``, then the reprobe (kernel-facts §1.3, §2(b)). in_use is consulted whenever the write sets
    bits (``reserve`` non-empty)."""
    w = k.w
    fn = f"{kind}mask_store"
    end = k.end()
    mine = w.apmask if kind == "ap" else w.aqmask
    width = w.nA if kind == "ap" else w.nD
    rmask, cmask = MaskConst(width, reserve), MaskConst(width, release)
    newly = rules.newly_reserved(mine.var, mine.var | rmask)
    busy_lab = k.label("in_use_trylock_failed")
    k.lock(w.P, fn)
    if reserve:
        k.t.trylock(w.M, "vfio_ap_mdev_resource_in_use", fail=busy_lab)
    b = Body()
    apms = [If(w.mdev_alive(m), w.apm[m].var, MaskConst(w.nA)) for m in w.mdevs]
    aqms = [If(w.mdev_alive(m), w.aqm[m].var, MaskConst(w.nD)) for m in w.mdevs]
    busy: Expr = Const(False, BOOL)  # a write that sets no bit calls no in_use: no mdev's matrix is read
    if reserve:
        busy = rules.in_use(newly, w.aqmask.var, apms, aqms) if kind == "ap" else \
            rules.in_use(w.apmask.var, newly, apms, aqms)
    new, _err = rules.mask_store(mine.var, (mine.var | rmask) & ~cmask, busy)
    b.set(mine, new)
    k.ret(b, If(busy, E["EBUSY"], 0))
    rel = [(w.M, None, None), (w.P, None, None)] if reserve else [(w.P, None, None)]
    verify = "__verify_card_reservations" if kind == "ap" else "__verify_queue_reservations"
    if reserve:
        k.unlock(f"{kind}mask_commit", *rel, body=b,
                 text=f"{verify} -> vfio_ap in_use: verify_no_sharing; commit ap_perms.{kind}m; unlock",
                 branches=[(None, f"{verify} -> vfio_ap in_use: verify_no_sharing"),
                           (busy, "assigned to an mdev: -EBUSY"), (Not(busy), f"commit ap_perms.{kind}m"),
                           (None, "unlock")])
    else:
        k.unlock(f"{kind}mask_commit", *rel, body=b, text=f"commit ap_perms.{kind}m; mutex_unlock(ap_perms_mutex)")
    ids = sorted(set(reserve) | set(release))
    qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else [(i, j) for i in range(w.nA) for j in ids]
    k.call("ap_bus_revise_bindings", qs=qs)
    if reserve:
        k.goto(end)
        k.at(busy_lab)
        b = Body()
        k.ret(b, "EBUSY")
        k.unlock(fn, (w.P, None, None), body=b,
                 text="in_use: mutex_trylock(matrix_dev->lock) failed: -EBUSY; mutex_unlock(ap_perms_mutex)")


@kernel("drivers/s390/crypto/ap_bus.c", name="apmask_store")
def apmask_store_v15(k: K, reserve: list[int], release: list[int]) -> None:
    """apmask_store with the series' trylock in_use."""
    _mask_store_trylock(k, "ap", reserve, release)


@kernel("drivers/s390/crypto/ap_bus.c", name="aqmask_store")
def aqmask_store_v15(k: K, reserve: list[int], release: list[int]) -> None:
    """aqmask_store with the series' trylock in_use."""
    _mask_store_trylock(k, "aq", reserve, release)


ERA = Era(dynamic=True, hook="module", busy=True, matrix_lock="matrix_dev->lock", guests_lock="",
          vfio_lock=False, vfio_kvm_ref=False)

V15 = LINUX_6_8.derive(
    "v15",
    "v15 dynamic-config series (Apr 2021) on 0cc00c8d4050: one matrix_dev->lock, kvm_busy, unlocked per-mdev "
    "pqap hook, set_masks under matrix_dev->lock (lockdep splat [S-v15])",
    era=ERA,
    override=[handle_pqap_module_hook, vfio_ap_handle_pqap_a2, open_a2, release_a2, assign_adapter_v15,
              assign_domain_v15, unassign_adapter_v15, unassign_domain_v15, apmask_store_v15, aqmask_store_v15,
              probe_queue_v15, remove_queue_v15, no_publish_hook],
    add=[kvm_arch_crypto_set_masks, commit_v15, hook_set_under_lock, hook_unset_under_lock, no_unset_clear_hook,
         kvm_vfio_group_del_a2],
    operations=operations("kvm_vfio_group_del"),
    drop_operations=("adapter_standby", "adapter_online", "assign_control_domain", "unassign_control_domain"),
    commits=("0cc00c8d4050",), doc="docs/designs/v15.md")

V16 = V15.derive(
    "v16",
    "v16 dynamic-config series (May 2021): vfio_ap_mdev_commit_apcb drops matrix_dev->lock around "
    "kvm_arch_crypto_set_masks under kvm_busy; unassign resets queues (v16 08/14)",
    override=[commit_v16, unassign_adapter_v16, unassign_domain_v16, probe_queue_v16, remove_queue_v16],
    doc="docs/designs/v15.md")

