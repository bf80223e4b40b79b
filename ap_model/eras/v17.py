"""Design ``v17``: the v17 dynamic-configuration series (Oct 2021), patch 01 + patches 08/09; and the variant
``v17-data-before-put`` (one hunk of vfio_ap_mdev_unset_kvm changed).

kernel-facts §2(d) ([S-v17]): the kvm module owns ONE global ``pqap_hook`` under the global mutex
``pqap_hook_lock``, registered at module load (-EACCES if taken) and unregistered at exit; priv.c runs the
hook with that mutex held (every PQAP(AQIC) of every VM serialized); vfio_ap finds the mdev through
``kvm->arch.crypto.data`` under ``matrix_dev->lock``; ``guests_lock`` is an rw_semaphore (set/unset_kvm
write, hot-plug paths read, then the guest's kvm->lock, then matrix_dev->lock); unset_kvm writes
``data = NULL`` and unlocks kvm->lock AFTER kvm_put_kvm. The group notifier opens as in 5.15. The
hot-plug bodies are 6.8's without the 2024 reset of filtered APIDs; assign takes no ap_perms_mutex; an
unassigned control domain re-filters the shadow's (v17 09/15).
Derived from 6.8. docs/designs/v17.md.
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import And, Expr, If, Not, Or
from checker.lang.layout import Field

from ..kernel.ap_bus import in_use_test_and_lock
from ..kernel.bodies import attach
from ..kernel.catalog import operations
from ..kernel.kvm import PRIV
from ..kernel.vfio_ap_ops import NO_KVM_LOCK, OPS, attached, found_body
from ..kfunc import K, kernel
from ..world import Body, E, Era, World
from .linux_5_15 import open_entry, vfio_device_close_5_15, vfio_device_open_notifier
from .linux_6_2 import filter_matrix_no_reset
from .linux_6_8 import LINUX_6_8

DRV = "drivers/s390/crypto/vfio_ap_drv.c"
KVM_S390 = "arch/s390/kvm/kvm-s390.c"


@kernel(OPS, name="get_update_locks_for_mdev")
def get_locks_v17(k: K, fn: str, mk: Expr | int, perms: bool = False,
                  found: tuple[Field, Expr] | None = None) -> None:
    """vfio_ap_mdev_get_locks: guests_lock (read) -> [guest's kvm->lock] -> matrix_dev->lock (no P)."""
    w = k.w
    k.lock(w.G, fn, mode="r")
    k.lock(w.KL, fn, when=attached(mk), index=mk, kvm_index=mk, skip=NO_KVM_LOCK, body=found_body(found))
    k.lock(w.M, fn)


@kernel(OPS, name="release_update_locks_for_mdev")
def release_locks_v17(k: K, mk: Expr | int, perms: bool = False) -> list[tuple[Any, ...]]:
    """Unlock matrix_dev->lock, the guest's kvm->lock, up_read(guests_lock)."""
    return [(k.w.M, None, None), (k.w.KL, attached(mk), mk), (k.w.G, None, None, "r")]


@kernel(OPS, name="vfio_ap_mdev_resource_in_use:lock")
def in_use_lock_v17(k: K, fn: str, verify: str, cond: Expr, skip_to: str) -> None:
    """The commit's test, then in_use: down_read(guests_lock) -> matrix_dev->lock."""
    in_use_test_and_lock(k, fn, verify, cond, skip_to, "r")


@kernel(OPS, name="vfio_ap_mdev_resource_in_use:unlock")
def in_use_unlock_v17(k: K) -> list[tuple[Any, ...]]:
    """in_use unlocks, then the caller's ap_perms_mutex."""
    return [(k.w.M, None, None), (k.w.G, None, None, "r"), (k.w.P, None, None)]


@kernel(PRIV, name="handle_pqap")
def handle_pqap_v17(k: K, v: int) -> None:
    """priv.c: pqap_hook_lock { if (pqap_hook) pqap_hook->fcn(vcpu) } (v17 01/15)."""
    w = k.w
    fl = w.in_pqap_flag(k.t, v)
    out = k.label("pqap_out")
    b = Body()
    b.set(fl, True)
    k.lock(w.GHL, "handle_pqap", body=b)
    k.call("vfio_ap_ops.handle_pqap", v=v, skip=out)
    b = Body()
    b.set(fl, False)
    k.at(out)
    k.unlock("handle_pqap", (w.GHL, None, None), body=b, text="priv.c: mutex_unlock(pqap_hook_lock)")


@kernel(OPS, name="vfio_ap_ops.handle_pqap")
def vfio_ap_handle_pqap_v17(k: K, v: int, skip: str) -> None:
    """vfio_ap: matrix_dev->lock { matrix_mdev = vcpu->kvm->arch.crypto.data; if (!matrix_mdev ||
    !matrix_mdev->kvm) goto out; AQIC }."""
    w = k.w
    unl = k.label("pqap_unlock")
    k.lock(w.M, "handle_pqap", when=w.hook_reg.var == 1, jumps=[(w.hook_reg.var != 1, skip)],
           skip="priv.c: pqap_hook == NULL (none registered): response code 0x01, cc 3")
    data = w.data[v].var
    b = Body()
    w.hook_target_freed(b, data, when=data != -1)
    k.step("handle_pqap", "vfio_ap: matrix_mdev = vcpu->kvm->arch.crypto.data; if (!matrix_mdev) goto out",
           body=b, jumps=[(data == -1, unl)],
           branches=[(None, "vfio_ap: matrix_mdev = vcpu->kvm->arch.crypto.data"),
                     (data == -1, "!matrix_mdev: goto out")])
    b = Body()
    w.use_mdev(b, data, "matrix_mdev = kvm->arch.crypto.data")
    w.hook_target_detached(b, v, data, when=data != -1)
    guest = w.kvm_of(data) != -1
    k.step("handle_pqap", "vfio_ap: if (!matrix_mdev->kvm) goto out; AQIC", body=b,
           branches=[(Not(guest), "vfio_ap: !matrix_mdev->kvm: goto out"), (guest, "vfio_ap: AQIC")])
    k.at(unl)
    k.unlock("handle_pqap", (w.M, None, None), text="vfio_ap: mutex_unlock(matrix_dev->lock)")


@kernel(OPS, name="store:bypass")
def no_store_bypass(k: K, b: Body, f: Any, x: int, assign: bool) -> Expr | None:
    """The v17/v18 postings (Jan/Feb 2022) predate "bypass unnecessary processing of AP resources" (v6.0): an
    assign of a bit already set (unassign of a clear one) redoes the whole store."""
    return None


@kernel(OPS, name="unassign_control_domain_store:shadow")
def unassign_cdom_refilter(k: K, b: Body, m: int, x: int, when: Expr | None) -> tuple[Expr, str]:
    """v17 09/15: after clearing the adm bit, ``if (vfio_ap_mdev_filter_cdoms(matrix_mdev))
    vfio_ap_mdev_hotplug_apcb`` -- the shadow's control domains re-filtered against the host configuration
    (v18 07/18 replaced it by clearing the one shadow bit, as merged)."""
    return k.w.filter_cdoms(b, m, when=when), "clear adm bit; shadow adm = adm & host config"


@kernel(OPS, name="vfio_ap_mdev_set_kvm")
def set_kvm_v17(k: K, mdev: int, vm: int, failed: str) -> None:
    """guests_lock (write) -> kvm->lock -> matrix_dev->lock { other guest with this kvm -> -EPERM; add
    ap_guest; kvm_get_kvm; kvm->arch.crypto.data = matrix_mdev; set masks (shadow) }."""
    w, m = k.w, mdev
    k.lock(w.G, "vfio_ap_mdev_set_kvm", mode="w")
    k.lock(w.KL, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    k.lock(w.M, "vfio_ap_mdev_set_kvm")
    b = Body()
    other = attach(w, b, m, vm, b[w.sapm[m]], b[w.saqm[m]])
    b.set(w.data[vm], m, when=Not(other))
    k.ret(b, If(other, E["EPERM"], 0))
    k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), (w.KL, None, vm), (w.G, None, None, "w"), body=b,
             text="other guest with this kvm: -EPERM; add ap_guest; kvm_get_kvm; "
                  "kvm->arch.crypto.data = matrix_mdev; set masks; unlock",
             jumps=[(other, failed)],
             branches=[(other, "another guest has this kvm: -EPERM"),
                       (Not(other), "add ap_guest; kvm_get_kvm; kvm->arch.crypto.data = matrix_mdev; set masks"),
                       (None, "unlock")])


@kernel(OPS, name="vfio_ap_mdev_unset_kvm")
def unset_kvm_v17(k: K, mdev: int, kv: Expr) -> None:
    """guests_lock (write) -> kvm->lock -> matrix_dev->lock { detach }; unlock kvm->lock after the put."""
    w, m = k.w, mdev
    k.lock(w.G, "vfio_ap_mdev_unset_kvm", mode="w")
    k.lock(w.KL, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
    k.lock(w.M, "vfio_ap_mdev_unset_kvm")
    k.call("vfio_ap_mdev_unset_kvm:detach", mdev=m, kv=kv)
    b = Body()
    w.use_kvm(b, kv, "mutex_unlock(&kvm->lock) after kvm_put_kvm")
    k.unlock("vfio_ap_mdev_unset_kvm", (w.KL, None, kv), (w.M, None, None), (w.G, None, None, "w"), body=b,
             text="mutex_unlock(&kvm->lock); mutex_unlock(matrix_dev->lock); up_write(guests_lock)")


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:detach")
def unset_detach_v17(k: K, mdev: int, kv: Expr) -> None:
    """v17 order: clear masks, reset, kvm_put_kvm, THEN kvm->arch.crypto.data = NULL (Halil's question)."""
    w, m = k.w, mdev
    b = Body()
    w.clear_masks(b, kv)
    w.reset_mdev_queues(b, m)
    w.put_kvm(b, kv)
    k.step("vfio_ap_mdev_unset_kvm", "del ap_guest; kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; "
                                     "kvm_put_kvm", body=b)
    b = Body()
    w.use_kvm(b, kv, "kvm->arch.crypto.data = NULL after kvm_put_kvm")
    b.set_at(w.data, kv, -1)
    b.set(w.mkvm[m], -1)
    k.ret(b, 0)
    k.step("vfio_ap_mdev_unset_kvm", "kvm->arch.crypto.data = NULL; matrix_mdev->kvm = NULL", body=b)


@kernel(DRV, name="vfio_ap_init")
def vfio_ap_init_v17(k: K) -> None:
    """modprobe: kvm_s390_pqap_hook_register(&vfio_ap's hook) under pqap_hook_lock (-EACCES if taken)."""
    w = k.w
    if not w.cfg.ap_instructions:
        b = Body()
        k.ret(b, "ENODEV")
        k.step("vfio_ap_init", "!ap_instructions_available(): -ENODEV (module not loaded)", body=b)
        return
    k.lock(w.GHL, "kvm_s390_pqap_hook_register")
    b = Body()
    taken = w.hook_reg.var != 0
    b.set(w.hook_reg, 1, when=Not(taken))
    b.set(w.registrations, w.registrations.var + 1, when=Not(taken))
    b.set(w.loaded, True, when=Not(taken))
    k.ret(b, If(taken, E["EACCES"], 0))
    k.unlock("kvm_s390_pqap_hook_register", (w.GHL, None, None), body=b,
             text="if (pqap_hook) -EACCES else pqap_hook = &vfio_ap's hook; mutex_unlock(pqap_hook_lock)",
             branches=[(taken, "pqap_hook already set: -EACCES"), (Not(taken), "pqap_hook = &vfio_ap's hook"),
                       (None, "mutex_unlock(pqap_hook_lock)")])


@kernel(DRV)
def vfio_ap_exit(k: K) -> None:
    """rmmod (module refcount: no vfio device open): vfio_ap_mdev_unregister removes every mdev (the mdev
    parent goes away), then kvm_s390_pqap_hook_unregister under pqap_hook_lock."""
    w = k.w
    k.step("vfio_ap_exit", "module refcount: no vfio device open", guard=And(*[f.var == 0 for f in w.vopen]))
    k.lock(w.G, "vfio_ap_mdev_remove", mode="w")
    k.lock(w.M, "vfio_ap_mdev_remove")
    b = Body()
    for m in w.mdevs:
        w.remove_mdev_body(b, m, when=w.mdev_alive(m))
    k.unlock("vfio_ap_mdev_remove", (w.M, None, None), (w.G, None, None, "w"), body=b,
             text="vfio_ap_mdev_unregister -> mdev_unregister_device: vfio_ap_mdev_remove of every mdev "
                  "(reset queues; list_del; kfree)")
    k.lock(w.GHL, "kvm_s390_pqap_hook_unregister")
    b = Body()
    mine = w.hook_reg.var == 1
    b.set(w.hook_reg, 0, when=mine)
    b.set(w.registrations, If(w.registrations.var > 0, w.registrations.var - 1, 0), when=mine)
    b.set(w.loaded, False)
    k.ret(b, If(mine, 0, E["EACCES"]))
    k.unlock("kvm_s390_pqap_hook_unregister", (w.GHL, None, None), body=b,
             text="WARN_ON(hook mismatch -> -EACCES); pqap_hook = NULL; mutex_unlock(pqap_hook_lock)",
             branches=[(Not(mine), "WARN: pqap_hook is not vfio_ap's hook: -EACCES"), (mine, "pqap_hook = NULL"),
                       (None, "mutex_unlock(pqap_hook_lock)")])


@kernel(KVM_S390)
def kvm_s390_pqap_hook_register(k: K) -> None:
    """A second driver registers the global hook: -EACCES while vfio_ap's is set."""
    w = k.w
    k.lock(w.GHL, "kvm_s390_pqap_hook_register")
    b = Body()
    taken = w.hook_reg.var != 0
    b.set(w.hook_reg, 2, when=Not(taken))
    b.set(w.registrations, w.registrations.var + 1, when=Not(taken))
    k.ret(b, If(taken, E["EACCES"], 0))
    k.unlock("kvm_s390_pqap_hook_register", (w.GHL, None, None), body=b,
             text="second driver: if (pqap_hook) -EACCES; mutex_unlock(pqap_hook_lock)",
             branches=[(taken, "second driver: pqap_hook already set: -EACCES"),
                       (Not(taken), "second driver: pqap_hook = its hook"), (None, "mutex_unlock(pqap_hook_lock)")])


def one_hook_registrant(w: World) -> None:
    attached_any = Or(*[w.mkvm[m].var != -1 for m in w.mdevs])
    w.pb.always("one-hook-registrant", And(w.registrations.var <= 1, Or(Not(attached_any), w.hook_reg.var == 1)),
                "at most one driver has registered the global PQAP hook, and it is vfio_ap's while a guest "
                "has an mdev", "kvm_s390_pqap_hook_register/unregister (v17 01/15)")


V17 = LINUX_6_8.derive(
    "v17",
    "v17 series (Oct 2021): global pqap_hook under pqap_hook_lock registered at module load, "
    "kvm->arch.crypto.data, guests_lock rwsem (v17 01/15, 08/15, 09/15; Tony/Halil thread Jan 2022)",
    era=Era(dynamic=True, hook="global", busy=False, matrix_lock="matrix_dev->lock", guests_lock="rwsem",
            vfio_lock=True, vfio_kvm_ref=False),
    override=[no_store_bypass, get_locks_v17, release_locks_v17, in_use_lock_v17, in_use_unlock_v17, handle_pqap_v17,
              vfio_ap_handle_pqap_v17, vfio_device_open_notifier, set_kvm_v17, vfio_device_close_5_15,
              unset_kvm_v17, filter_matrix_no_reset, vfio_ap_init_v17, unassign_cdom_refilter],
    add=[open_entry, unset_detach_v17, vfio_ap_exit, kvm_s390_pqap_hook_register],
    operations=operations("vfio_ap_exit", "hook_register_other"),
    properties=[one_hook_registrant], doc="docs/designs/v17.md")


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:detach")
def detach_data_before_put(k: K, mdev: int, kv: Expr) -> None:
    """The variant: kvm->arch.crypto.data = NULL BEFORE kvm_put_kvm (kvm->lock is still unlocked after it)."""
    w, m = k.w, mdev
    b = Body()
    w.clear_masks(b, kv)
    w.reset_mdev_queues(b, m)
    b.set_at(w.data, kv, -1)
    k.step("vfio_ap_mdev_unset_kvm", "del ap_guest; kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; "
                                     "kvm->arch.crypto.data = NULL", body=b)
    b = Body()
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    k.ret(b, 0)
    k.step("vfio_ap_mdev_unset_kvm", "kvm_put_kvm; matrix_mdev->kvm = NULL", body=b)


V17_DATA_BEFORE_PUT = V17.derive(
    "v17-data-before-put", "v17 with kvm->arch.crypto.data cleared before kvm_put_kvm in vfio_ap_mdev_unset_kvm "
    "(variant)", override=[detach_data_before_put], doc="docs/designs/v17.md")
