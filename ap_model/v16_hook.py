"""Design ``v16-hook``: the per-KVM PQAP hook under ``pqap_hook_rwsem`` (v5.15 - v5.19).

The "v16 hook design" of this project: the state v17 patch 01 replaces and v17
was rebased on — kernel-facts §2(a4)/(c′): 1e753732bda6 "r/w lock for PQAP
interception handler function pointer" + 86956e70761b "replace open coded
locks for VFIO_GROUP_NOTIFY_SET_KVM notification" (merged for v5.15).

- priv.c ``handle_pqap``: ``down_read(pqap_hook_rwsem)``, call the hook;
  vfio_ap ``handle_pqap``: ``matrix_dev->lock``, ``container_of(hook)``;
- ``vfio_ap_mdev_set_kvm``: hook written under the rwsem FIRST, then
  ``kvm->lock -> matrix_dev->lock`` { other mdev has this kvm -> -EPERM;
  kvm_get_kvm; masks from the raw matrix };
- ``vfio_ap_mdev_unset_kvm``: hook = NULL under the rwsem; ``kvm->lock ->
  matrix_dev->lock`` { clear masks; reset; kvm_put_kvm; kvm = NULL }; then
  ``kvm->lock`` is unlocked after the put; no vfio-core kvm reference yet;
- pre-dynamic rules: no shadow, assign/unassign refused (-EBUSY) while a guest
  is attached, assignment needs the queues bound to vfio_ap; no ``in_use``:
  an apmask write silently moves queues to zcrypt; queue remove resets the
  queue but leaves the guest's CRYCB untouched.
"""

from __future__ import annotations

from checker.lang.expr import And, If, MaskConst, Not, Or
from checker.lang.program import ThreadBuilder

from . import rules
from .final import FinalDesign, w_e
from .world import NODRV, VFIO, Body, Era, World

PRE_DYNAMIC_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
                   "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
                   "unassign_domain", "apmask_store", "aqmask_store", "unbind_queue", "set_apie",
                   "vfio_ap_init")


class V16HookDesign(FinalDesign):
    name = "v16-hook"
    summary = ("v5.15-v5.19: per-KVM kvm->arch.crypto.pqap_hook under pqap_hook_rwsem, kvm->lock -> "
               "matrix_dev->lock, pre-dynamic (1e753732bda6 + 86956e70761b; the design v17 01/15 replaces)")
    era = Era(dynamic=False, hook="rwsem", busy=False, matrix_lock="matrix_dev->lock", guests_lock="",
              vfio_lock=True, vfio_kvm_ref=False)
    supported = PRE_DYNAMIC_OPS

    def declare(self, w: World) -> None:
        w.pending = []

    # pqap: inherited from final (HR read -> matrix_dev->lock)

    def op_open_device(self, w: World, t: ThreadBuilder, mdev: int, vm: int) -> None:
        m = mdev
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (open_device)")
        w.lock(t, w.VG, "vfio_device_open", index=m, body=b)
        w.notifier_open(t, m, vm, "vfio_device_open")
        w.lock(t, w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
        b = Body()
        b.set(w.hook[vm], m)
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
                 text="kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; up_write")
        w.lock(t, w.KL, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
        w.lock(t, w.M, "vfio_ap_mdev_set_kvm")
        b = Body()
        other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
        ok = Not(other)
        w.get_kvm(b, vm, when=ok)
        b.set(w.mkvm[m], vm, when=ok)
        w.set_masks(b, vm, w.apm[m].var, w.aqm[m].var, m, when=ok)
        b.set(w.vopen[m], True, when=ok)
        w.set_ret(b, t, If(other, w_e("EPERM"), 0))
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.KL, None, vm), (w.M, None, None), body=b,
                 text="other mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                      "kvm_arch_crypto_set_masks(matrix); unlock")
        w.unlock(t, "vfio_device_open", (w.VG, None, m))

    def op_close_device(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m = mdev
        done = w.label(t, "close_done")
        kv = w.close_device_entry(t, m, "vfio_device_close", [(Or(Not(w.vopen[m].var), w.mkvm[m].var == -1), done)])
        w.lock(t, w.HR, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
        b = Body()
        b.set_at(w.hook, kv, -1)
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.HR, None, kv), body=b,
                 text="kvm->arch.crypto.pqap_hook = NULL; up_write")
        w.lock(t, w.KL, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
        w.lock(t, w.M, "vfio_ap_mdev_unset_kvm")
        b = Body()
        w.clear_masks(b, kv)
        w.reset_mdev_queues(b, m)
        w.put_kvm(b, kv)
        b.set(w.mkvm[m], -1)
        w.set_ret(b, t, 0)
        w.step(t, "vfio_ap_mdev_unset_kvm", "kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; "
                                            "kvm_put_kvm; matrix_mdev->kvm = NULL", body=b)
        b = Body()
        w.use_kvm(b, kv, "mutex_unlock(&kvm->lock) after kvm_put_kvm")
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.KL, None, kv), (w.M, None, None), body=b,
                 text="mutex_unlock(&kvm->lock); mutex_unlock(matrix_dev->lock)")
        t.label(done)
        b = Body()
        b.set(w.vopen[m], False)
        b.set(w.closing[m], False)
        b.set(w.local(t, "kvm", w.kslots), -1)
        w.unlock(t, "vfio_device_close", (w.VG, None, m), body=b)

    def op_mdev_remove(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m = mdev
        w.step(t, "vfio_unregister_group_dev", "wait until the vfio device is closed",
               guard=Not(w.vopen[m].var))
        w.lock(t, w.M, "vfio_ap_mdev_remove")
        b = Body()
        w.remove_mdev_body(b, m)
        w.set_ret(b, t, 0)
        w.unlock(t, "vfio_ap_mdev_remove", (w.M, None, None), body=b,
                 text="vfio_ap_mdev_reset_queues; list_del; unlock; kfree(matrix_mdev)")

    # ------------------------------------------------------------ pre-dynamic sysfs rules
    def _assign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"assign_{kind}_store"
        w.lock(t, w.M, fn)
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
        attached = w.mkvm[m].var != -1
        apm, aqm = w.apm[m].var, w.aqm[m].var
        new_apm = apm.with_bit(x) if kind == "adapter" else apm
        new_aqm = aqm.with_bit(x) if kind == "domain" else aqm
        # vfio_ap_mdev_verify_queues_reserved_for_apid/apqi: every APQN of the new row/column bound to vfio_ap
        if kind == "adapter":
            row_ok = [And(*[Or(Not(new_aqm.has(j)), w.bound(x, j)) for j in range(w.nD)]),
                      Or(new_aqm.nonempty(), Or(*[w.bound(x, j) for j in range(w.nD)]))]
        else:
            row_ok = [And(*[Or(Not(new_apm.has(i)), w.bound(i, x)) for i in range(w.nA)]),
                      Or(new_apm.nonempty(), Or(*[w.bound(i, x) for i in range(w.nA)]))]
        notavail = Not(And(*row_ok))
        others = [o for o in w.mdevs if o != m]
        inuse = Or(*[And(w.mdev_alive(o), rules.sharing_conflict(new_apm, new_aqm, w.apm[o].var, w.aqm[o].var))
                     for o in others])
        ok = And(Not(attached), Not(notavail), Not(inuse))
        f = w.apm[m] if kind == "adapter" else w.aqm[m]
        b.set(f, new_apm if kind == "adapter" else new_aqm, when=ok)
        ret = If(attached, w_e("EBUSY"), If(notavail, w_e("EADDRNOTAVAIL"), If(inuse, w_e("EADDRINUSE"), 0)))
        w.set_ret(b, t, ret)
        w.unlock(t, fn, (w.M, None, None), body=b,
                 text="if (matrix_mdev->kvm) -EBUSY; verify queues reserved (bound to vfio_ap); "
                      "verify_no_sharing; set bit; unlock")

    def _unassign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"unassign_{kind}_store"
        w.lock(t, w.M, fn)
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
        attached = w.mkvm[m].var != -1
        f = w.apm[m] if kind == "adapter" else w.aqm[m]
        b.set(f, f.var.without_bit(x), when=Not(attached))
        w.set_ret(b, t, If(attached, w_e("EBUSY"), 0))
        w.unlock(t, fn, (w.M, None, None), body=b, text="if (matrix_mdev->kvm) -EBUSY; clear bit; unlock")

    # ------------------------------------------------------------ AP bus (no in_use, no guest update)
    def remove_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        w.lock(t, w.M, "vfio_ap_queue_dev_remove")
        b = Body()
        w.reset_queue(b, i, j)
        b.set(w.drv[i, j], NODRV)
        w.unlock(t, "vfio_ap_queue_dev_remove", (w.M, None, None), body=b,
                 text="vfio_ap_mdev_reset_queue; vfio_ap_irq_disable; drvdata = NULL; kfree(q) "
                      "(guest CRYCB not updated)")

    def probe_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        b = Body()
        b.set(w.drv[i, j], VFIO)
        w.step(t, "vfio_ap_queue_dev_probe", "kzalloc(q); dev_set_drvdata", body=b)

    def _mask_store(self, w: World, t: ThreadBuilder, kind: str, reserve: list[int], release: list[int]) -> None:
        fn = f"{kind}mask_store"
        mine = w.apmask if kind == "ap" else w.aqmask
        width = w.nA if kind == "ap" else w.nD
        w.lock(t, w.P, fn)
        b = Body()
        b.set(mine, (mine.var | MaskConst(width, reserve)) & ~MaskConst(width, release))
        w.set_ret(b, t, 0)
        w.unlock(t, fn, (w.P, None, None), body=b, text=f"commit ap_perms.{kind[1]}m (no in_use); unlock")
        ids = sorted(set(reserve) | set(release))
        qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else \
             [(i, j) for i in range(w.nA) for j in ids]
        self.reprobe(w, t, qs)


__all__ = ["V16HookDesign"]
