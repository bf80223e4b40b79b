"""Design ``5.15`` (alias ``v16-hook``): v5.15 - v5.19, pre-dynamic vfio_ap with the per-KVM PQAP hook.

1e753732bda6 "r/w lock for PQAP interception handler function pointer" + 86956e70761b "replace open coded
locks for VFIO_GROUP_NOTIFY_SET_KVM notification" (kernel-facts §2(a3)/(a4), (c')): priv.c calls the hook
under ``pqap_hook_rwsem`` (read); set_kvm publishes the hook first, then ``kvm->lock -> matrix_dev->lock``;
unset_kvm clears it, then puts the kvm under both locks and unlocks kvm->lock after the put; the group
notifier replays SET_KVM at open; no vfio-core kvm reference; pre-dynamic sysfs and AP bus rules.
Derived from 6.8 by overriding the functions that differ. docs/designs/5.15.md.
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or

from .. import rules
from ..kernel.bodies import attach
from ..kernel.catalog import operations
from ..kernel.vfio_ap_ops import OPS, VFIO_GROUP
from ..kfunc import K, kernel
from ..world import NODRV, VFIO, Body, E, Era
from .linux_6_8 import LINUX_6_8

VFIO_MAIN = "drivers/vfio/vfio.c"
# v5.3 - v5.18 and the postings on them: vfio_register_group_notifier drops the SET_KVM replay's result
SWALLOWED = ("set_kvm -EPERM, NOTIFY_DONE; vfio_register_group_notifier ignores the replay's result: "
             "the open returns an fd with no KVM")
PRE_DYNAMIC_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
                   "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
                   "unassign_domain", "apmask_store", "aqmask_store", "unbind_queue", "set_apie", "vfio_ap_init")


@kernel(VFIO_MAIN, name="vfio_device_open")
def vfio_device_open_notifier(k: K, mdev: int, vm: int) -> None:
    """vfio_group_get_device_fd -> vfio_ap_mdev_open_device (group lock held): the registered group
    notifier replays SET_KVM when group->kvm is set -> vfio_ap_mdev_set_kvm. Its -EPERM does not fail
    the open (v5.15 - v5.18, the v17/v18 postings): the fd is returned and counted, with no KVM."""
    w, m = k.w, mdev
    if vm in w.cfg.no_crycb:
        k.call("vfio_ap_mdev_set_kvm:no_crycb", mdev=mdev)
        return
    unlock, failed = k.label("open_unlock"), k.label("open_failed")
    k.call("vfio_device_open:entry", mdev=m, vm=vm, opened=unlock)
    k.call("vfio_ap_mdev_set_kvm", mdev=m, vm=vm, failed=failed)
    k.at(unlock)
    k.unlock("vfio_device_open", (w.VG, None, m), goto=k.end())
    k.at(failed)  # set_kvm's -EPERM: the notifier returns NOTIFY_DONE, which the registration ignores
    b = Body()
    k.ret(b, 0)
    k.unlock("vfio_device_open", (w.VG, None, m), body=b,
             text=f"{SWALLOWED} (open_count stays); mutex_unlock")


@kernel(VFIO_MAIN, name="vfio_device_open:entry")
def open_entry(k: K, mdev: int, vm: int, opened: str) -> None:
    """The device of a removed mdev (or of an unloaded module) cannot be opened: -ENODEV. dev_set->lock
    (named group_lock); open_count++; a device already open (``opened``: continue at the unlock) does not
    call open_device again. The first open registers the group notifier: SET_KVM is replayed only if
    group->kvm is set (kvm_vfio_release clears it before the VM goes away)."""
    w, m = k.w, mdev
    alive = w.vfio_device_gettable(m)
    again = w.vopen[m].var != 0
    b = Body()
    k.ret(b, If(alive, 0, E["ENODEV"]), when=Or(Not(alive), again))
    w.vfio_users(b, m, 1, when=alive)
    k.lock(w.VG, "vfio_device_open", index=m, when=alive, body=b,
           jumps=[(Not(alive), k.end()), (again, opened)],
           branches=[(Not(alive), "mdev removed: -ENODEV"), (alive, "{lock}; open_count++"),
                     (And(alive, again), "already open: open_device not called")])
    w.notifier_open(k.t, m, vm, "vfio_device_open")


@kernel(OPS, name="vfio_ap_mdev_set_kvm")
def set_kvm_5_15(k: K, mdev: int, vm: int, failed: str) -> None:
    """if crycbd: hook under pqap_hook_rwsem; kvm->lock -> matrix_dev->lock { other mdev has this kvm ->
    -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; kvm_arch_crypto_set_masks(raw matrix) }."""
    w, m = k.w, mdev
    k.call("vfio_ap_mdev_set_kvm:publish_hook", mdev=m, vm=vm)
    k.lock(w.KL, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    k.lock(w.M, "vfio_ap_mdev_set_kvm")
    b = Body()
    other = attach(w, b, m, vm, w.apm[m].var, w.aqm[m].var)
    k.ret(b, If(other, E["EPERM"], 0))
    k.unlock("vfio_ap_mdev_set_kvm", (w.KL, None, vm), (w.M, None, None), body=b,
             text="other mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                  "kvm_arch_crypto_set_masks(matrix); unlock",
             jumps=[(other, failed)],
             branches=[(other, "another mdev has this kvm: -EPERM"),
                       (Not(other), "kvm_get_kvm; matrix_mdev->kvm = kvm; kvm_arch_crypto_set_masks(matrix)"),
                       (None, "unlock")])


@kernel(VFIO_GROUP, name="vfio_device_close")
def vfio_device_close_5_15(k: K, mdev: int) -> None:
    """Last fd (open_count 1): vfio_ap_mdev_close_device -> vfio_ap_mdev_unset_kvm (group lock held); no
    vfio-core kvm reference. Another fd still open: open_count-- only."""
    w, m = k.w, mdev
    done = k.label("close_done")
    users = w.vopen[m].var
    kv = w.close_device_entry(k.t, m, "vfio_device_close", [(Or(users != 1, w.mkvm[m].var == -1), done)])
    k.call("vfio_ap_mdev_unset_kvm", mdev=m, kv=kv)
    k.at(done)
    b = Body()
    w.vfio_users(b, m, -1, when=b[w.vopen[m]] > 0)
    b.set(w.closing[m], False)
    b.set(k.local("kvm", w.kslots), -1)
    k.unlock("vfio_device_close", (w.VG, None, m), body=b,
             text="open_count--; mutex_unlock(group_lock)")


@kernel(OPS, name="vfio_ap_mdev_unset_kvm")
def unset_kvm_5_15(k: K, mdev: int, kv: Expr) -> None:
    """hook = NULL under pqap_hook_rwsem; kvm->lock -> matrix_dev->lock { clear masks; reset; kvm_put_kvm;
    kvm = NULL }; mutex_unlock(&kvm->lock) after the put."""
    w, m = k.w, mdev
    k.lock(w.HR, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
    b = Body()
    b.set_at(w.hook, kv, -1)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.HR, None, kv), body=b, text="kvm->arch.crypto.pqap_hook = NULL; up_write")
    k.lock(w.KL, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
    k.lock(w.M, "vfio_ap_mdev_unset_kvm")
    b = Body()
    w.clear_masks(b, kv)
    w.reset_mdev_queues(b, m)
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    k.ret(b, 0)
    k.step("vfio_ap_mdev_unset_kvm", "kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; kvm_put_kvm; "
                                     "matrix_mdev->kvm = NULL", body=b)
    b = Body()
    w.use_kvm(b, kv, "mutex_unlock(&kvm->lock) after kvm_put_kvm")
    k.unlock("vfio_ap_mdev_unset_kvm", (w.KL, None, kv), (w.M, None, None), body=b,
             text="mutex_unlock(&kvm->lock); mutex_unlock(matrix_dev->lock)")


# ---------------------------------------------------------------- pre-dynamic sysfs rules


def assign_pre_dynamic(k: K, m: int, kind: str, x: int) -> None:
    """matrix_dev->lock { if (matrix_mdev->kvm) -EBUSY; verify the new row/column's queues are bound to
    vfio_ap (EADDRNOTAVAIL); verify_no_sharing (EADDRINUSE); set bit }."""
    w = k.w
    fn = f"assign_{kind}_store"
    k.lock(w.M, fn)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    attached = w.mkvm[m].var != -1
    apm, aqm = w.apm[m].var, w.aqm[m].var
    new_apm = apm.with_bit(x) if kind == "adapter" else apm
    new_aqm = aqm.with_bit(x) if kind == "domain" else aqm
    if kind == "adapter":
        row_ok = [And(*[Or(Not(new_aqm.has(j)), w.bound(x, j)) for j in range(w.nD)]),
                  Or(new_aqm.nonempty(), Or(*[w.bound(x, j) for j in range(w.nD)]))]
    else:
        row_ok = [And(*[Or(Not(new_apm.has(i)), w.bound(i, x)) for i in range(w.nA)]),
                  Or(new_apm.nonempty(), Or(*[w.bound(i, x) for i in range(w.nA)]))]
    notavail = Not(And(*row_ok))
    inuse = Or(*[And(w.mdev_alive(o), rules.sharing_conflict(new_apm, new_aqm, w.apm[o].var, w.aqm[o].var))
                 for o in w.mdevs if o != m])
    ok = And(Not(attached), Not(notavail), Not(inuse))
    f = w.apm[m] if kind == "adapter" else w.aqm[m]
    b.set(f, new_apm if kind == "adapter" else new_aqm, when=ok)
    k.ret(b, If(attached, E["EBUSY"], If(notavail, E["EADDRNOTAVAIL"], If(inuse, E["EADDRINUSE"], 0))))
    k.unlock(fn, (w.M, None, None), body=b, text="if (matrix_mdev->kvm) -EBUSY; verify queues reserved (bound to "
                                                 "vfio_ap); verify_no_sharing; set bit; unlock",
             branches=[(attached, "matrix_mdev->kvm set: -EBUSY"),
                       (And(Not(attached), notavail), "queues not bound to vfio_ap: -EADDRNOTAVAIL"),
                       (And(Not(attached), Not(notavail), inuse), "verify_no_sharing: -EADDRINUSE"),
                       (ok, "queues reserved; verify_no_sharing; set bit"), (None, "unlock")])


def unassign_pre_dynamic(k: K, m: int, kind: str, x: int) -> None:
    """matrix_dev->lock { if (matrix_mdev->kvm) -EBUSY; clear bit }."""
    w = k.w
    fn = f"unassign_{kind}_store"
    k.lock(w.M, fn)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    attached = w.mkvm[m].var != -1
    f = w.apm[m] if kind == "adapter" else w.aqm[m]
    b.set(f, f.var.without_bit(x), when=Not(attached))
    k.ret(b, If(attached, E["EBUSY"], 0))
    k.unlock(fn, (w.M, None, None), body=b, text="if (matrix_mdev->kvm) -EBUSY; clear bit; unlock",
             branches=[(attached, "matrix_mdev->kvm set: -EBUSY"), (Not(attached), "clear bit"), (None, "unlock")])


def control_domain_pre_dynamic(k: K, m: int, x: int, assign: bool) -> None:
    """matrix_dev->lock { if (matrix_mdev->kvm) -EBUSY; set/clear the adm bit } (no guest update)."""
    w = k.w
    fn = f"{'' if assign else 'un'}assign_control_domain_store"
    k.lock(w.M, fn)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    refused = Or(w.mkvm[m].var != -1, w.busy(m))
    f = w.adm[m]
    b.set(f, f.var.with_bit(x) if assign else f.var.without_bit(x), when=Not(refused))
    k.ret(b, If(refused, E["EBUSY"], 0))
    what = "set adm bit" if assign else "clear adm bit"
    k.unlock(fn, (w.M, None, None), body=b, text=f"if (matrix_mdev->kvm) -EBUSY; {what}; unlock",
             branches=[(w.mkvm[m].var != -1, "matrix_mdev->kvm set: -EBUSY"),
                       (And(w.mkvm[m].var == -1, w.busy(m)), "matrix_mdev->kvm_busy: -EBUSY"),
                       (Not(refused), what), (None, "unlock")])


@kernel(OPS, name="assign_control_domain_store")
def assign_cdom_5_15(k: K, mdev: int, apqi: int) -> None:
    """Pre-dynamic assign_control_domain_store."""
    control_domain_pre_dynamic(k, mdev, apqi, True)


@kernel(OPS, name="unassign_control_domain_store")
def unassign_cdom_5_15(k: K, mdev: int, apqi: int) -> None:
    """Pre-dynamic unassign_control_domain_store."""
    control_domain_pre_dynamic(k, mdev, apqi, False)


@kernel(OPS, name="assign_adapter_store")
def assign_adapter_5_15(k: K, mdev: int, apid: int) -> None:
    """Pre-dynamic assign_adapter_store."""
    assign_pre_dynamic(k, mdev, "adapter", apid)


@kernel(OPS, name="assign_domain_store")
def assign_domain_5_15(k: K, mdev: int, apqi: int) -> None:
    """Pre-dynamic assign_domain_store."""
    assign_pre_dynamic(k, mdev, "domain", apqi)


@kernel(OPS, name="unassign_adapter_store")
def unassign_adapter_5_15(k: K, mdev: int, apid: int) -> None:
    """Pre-dynamic unassign_adapter_store."""
    unassign_pre_dynamic(k, mdev, "adapter", apid)


@kernel(OPS, name="unassign_domain_store")
def unassign_domain_5_15(k: K, mdev: int, apqi: int) -> None:
    """Pre-dynamic unassign_domain_store."""
    unassign_pre_dynamic(k, mdev, "domain", apqi)


# ---------------------------------------------------------------- AP bus: no in_use, no guest update


@kernel("drivers/s390/crypto/vfio_ap_drv.c", name="vfio_ap_mdev_remove_queue")
def vfio_ap_queue_dev_remove(k: K, i: int, j: int) -> None:
    """The driver's remove callback (vfio_ap_queue_dev_remove): matrix_dev->lock { reset the queue; disable
    IRQs; drvdata = NULL; kfree(q) } -- the guest's CRYCB is NOT updated."""
    w = k.w
    k.lock(w.M, "vfio_ap_queue_dev_remove")
    b = Body()
    w.reset_queue(b, i, j)
    b.set(w.drv[i, j], NODRV)
    b.set(w.vfio_queue[i, j], False)
    k.unlock("vfio_ap_queue_dev_remove", (w.M, None, None), body=b,
             text="vfio_ap_mdev_reset_queue; vfio_ap_irq_disable; drvdata = NULL; kfree(q) (guest CRYCB not updated)")


@kernel("drivers/s390/crypto/vfio_ap_drv.c", name="vfio_ap_mdev_probe_queue")
def vfio_ap_queue_dev_probe(k: K, i: int, j: int) -> None:
    """The driver's probe callback (vfio_ap_queue_dev_probe): kzalloc(q); dev_set_drvdata."""
    b = Body()
    b.set(k.w.drv[i, j], VFIO)
    b.set(k.w.vfio_queue[i, j], True)
    k.step("vfio_ap_queue_dev_probe", "kzalloc(q); dev_set_drvdata", body=b)


def mask_store_no_in_use(k: K, kind: str, reserve: list[int], release: list[int]) -> None:
    """ap_perms_mutex { commit } (no in_use callback), then the reprobe."""
    w = k.w
    fn = f"{kind}mask_store"
    mine = w.apmask if kind == "ap" else w.aqmask
    width = w.nA if kind == "ap" else w.nD
    k.lock(w.P, fn)
    b = Body()
    b.set(mine, (mine.var | MaskConst(width, reserve)) & ~MaskConst(width, release))
    k.ret(b, 0)
    k.unlock(fn, (w.P, None, None), body=b, text=f"commit ap_perms.{kind[1]}m (no in_use); unlock")
    ids = sorted(set(reserve) | set(release))
    qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else [(i, j) for i in range(w.nA) for j in ids]
    k.call("ap_bus_revise_bindings", qs=qs)


@kernel("drivers/s390/crypto/ap_bus.c", name="apmask_store")
def apmask_store_5_15(k: K, reserve: list[int], release: list[int]) -> None:
    """apmask_store before the in_use callback."""
    mask_store_no_in_use(k, "ap", reserve, release)


@kernel("drivers/s390/crypto/ap_bus.c", name="aqmask_store")
def aqmask_store_5_15(k: K, reserve: list[int], release: list[int]) -> None:
    """aqmask_store before the in_use callback."""
    mask_store_no_in_use(k, "aq", reserve, release)


@kernel("virt/kvm/vfio.c", name="kvm_vfio_group_del")
def kvm_vfio_group_del_5_15(k: K, vm: int, mdev: int) -> None:
    """KVM_DEV_VFIO_GROUP_DEL: kvm_vfio_group_set_kvm(group, NULL) -> the group notifier's SET_KVM(NULL) ->
    vfio_ap_mdev_unset_kvm (reads matrix_mdev->kvm unlocked); the device stays open. (The group's kvm is
    ``vm``'s: an mdev attached to another VM is not touched.)"""
    w = k.w
    lk = k.local("kvm", w.kslots)
    b = Body()
    b.set(lk, w.mkvm[mdev].var)
    k.step("kvm_vfio_group_set_kvm", f"SET_KVM(NULL) for mdev{mdev}: vfio_ap_mdev_unset_kvm: kvm = matrix_mdev->kvm",
           body=b, jumps=[(w.mkvm[mdev].var != vm, k.end())])
    k.call("vfio_ap_mdev_unset_kvm", mdev=mdev, kv=lk.var)


LINUX_5_15 = LINUX_6_8.derive(
    "5.15",
    "v5.15-v5.19: per-KVM kvm->arch.crypto.pqap_hook under pqap_hook_rwsem, kvm->lock -> matrix_dev->lock, "
    "pre-dynamic (1e753732bda6 + 86956e70761b; the design v17 01/15 replaces)",
    era=Era(dynamic=False, hook="rwsem", busy=False, matrix_lock="matrix_dev->lock", guests_lock="",
            vfio_lock=True, vfio_kvm_ref=False),
    override=[vfio_device_open_notifier, set_kvm_5_15, vfio_device_close_5_15, unset_kvm_5_15,
              assign_adapter_5_15, assign_domain_5_15, unassign_adapter_5_15, unassign_domain_5_15,
              vfio_ap_queue_dev_remove, vfio_ap_queue_dev_probe, apmask_store_5_15, aqmask_store_5_15,
              assign_cdom_5_15, unassign_cdom_5_15],
    add=[open_entry, kvm_vfio_group_del_5_15],
    operations=operations("kvm_vfio_group_del"),
    drop_operations=("adapter_standby", "adapter_online"),
    commits=("1e753732bda6", "86956e70761b"), doc="docs/designs/5.15.md")

V16_HOOK = LINUX_5_15.alias("v16-hook")
