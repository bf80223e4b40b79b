"""Design ``v17``: the v17 dynamic-configuration series (Oct 2021), patch 01 + patches 08/09.

Follows kernel-facts §2(d) ([S-v17]: "Set pqap hook when vfio_ap module is
loaded", "keep track of active guests", "allow hot plug/unplug"):

- the kvm module owns ONE global ``pqap_hook`` pointer guarded by the global
  mutex ``pqap_hook_lock``; vfio_ap registers it at module init
  (``kvm_s390_pqap_hook_register``: -EACCES if already set) and unregisters it
  at module exit; a second driver trying to register is an event;
- priv.c ``handle_pqap`` runs the hook with ``pqap_hook_lock`` held, so every
  PQAP(AQIC) intercept of every VM is serialized;
- vfio_ap ``handle_pqap`` finds the mdev through ``kvm->arch.crypto.data``
  under ``matrix_dev->lock``;
- ``matrix_dev->guests_lock`` is an rw_semaphore: set/unset_kvm take it for
  writing, then ``kvm->lock``, then ``matrix_dev->lock``; hot-plug paths take
  it for reading, then the guest's ``kvm->lock``, then ``matrix_dev->lock``;
- ``vfio_ap_mdev_unset_kvm`` writes ``kvm->arch.crypto.data = NULL`` and
  unlocks ``kvm->lock`` AFTER ``kvm_put_kvm`` (the detail Halil questioned);
  the vfio core of that time (v5.15) holds no kvm reference of its own.

The hot-plug bodies are those of ``final`` (the series' logic survived into
6.x) without the 2023 reset of filtered APIDs; whether v17 took
``ap_perms_mutex`` in assign is not recorded, so it does not here.
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import And, Expr, If, Not, Or
from checker.lang.program import ThreadBuilder

from .final import DYNAMIC_OPS, FinalDesign, _attached, w_e
from .world import Body, Era, World


class V17Design(FinalDesign):
    name = "v17"
    summary = ("v17 series (Oct 2021): global pqap_hook under pqap_hook_lock registered at module load, "
               "kvm->arch.crypto.data, guests_lock rwsem (v17 01/15, 08/15, 09/15; Tony/Halil thread Jan 2022)")
    era = Era(dynamic=True, hook="global", busy=False, matrix_lock="matrix_dev->lock", guests_lock="rwsem",
              vfio_lock=True, vfio_kvm_ref=False)
    supported = DYNAMIC_OPS + ("vfio_ap_exit", "hook_register_other")
    reset_filtered = False
    assign_takes_perms = False

    def add_properties(self, w: World) -> None:
        super().add_properties(w)
        attached = Or(*[w.mkvm[m].var != -1 for m in w.mdevs])
        w.pb.always("one-hook-registrant",
                    And(w.registrations.var <= 1, Or(Not(attached), w.hook_reg.var == 1)),
                    "at most one driver has registered the global PQAP hook, and it is vfio_ap's while a guest "
                    "has an mdev", "kvm_s390_pqap_hook_register/unregister (v17 01/15)")

    # ------------------------------------------------------------ locks of v17
    def update_locks(self, w: World, t: ThreadBuilder, fn: str, mk: Expr | int, perms: bool = False) -> None:
        """vfio_ap_mdev_get_locks: guests_lock (read) -> [guest's kvm->lock] -> matrix_dev->lock."""
        w.lock(t, w.G, fn, mode="r")
        w.lock(t, w.KL, fn, when=_attached(mk), index=mk, kvm_index=mk)
        w.lock(t, w.M, fn)

    def update_releases(self, w: World, mk: Expr | int, perms: bool = False) -> list[tuple[Any, ...]]:
        return [(w.M, None, None), (w.KL, _attached(mk), mk), (w.G, None, None, "r")]

    def in_use_locks(self, w: World, t: ThreadBuilder, cond: Expr) -> None:
        w.lock(t, w.G, "vfio_ap_mdev_resource_in_use", when=cond, mode="r")
        w.lock(t, w.M, "vfio_ap_mdev_resource_in_use", when=cond)

    def in_use_releases(self, w: World, cond: Expr) -> list[tuple[Any, ...]]:
        return [(w.M, cond, None), (w.G, cond, None, "r"), (w.P, None, None)]

    # ------------------------------------------------------------ PQAP through the global hook
    def pqap(self, w: World, t: ThreadBuilder, v: int) -> None:
        fl = w.in_pqap_flag(t, v)
        out, unl = w.label(t, "pqap_out"), w.label(t, "pqap_unlock")
        b = Body()
        b.set(fl, True)
        w.lock(t, w.GHL, "handle_pqap", body=b)
        w.lock(t, w.M, "handle_pqap", when=w.hook_reg.var == 1, jumps=[(w.hook_reg.var != 1, out)])
        data = w.data[v].var
        b = Body()
        w.hook_target_freed(b, data, when=data != -1)
        w.step(t, "handle_pqap", "vfio_ap: matrix_mdev = vcpu->kvm->arch.crypto.data; if (!matrix_mdev) goto out",
               body=b, jumps=[(data == -1, unl)])
        b = Body()
        w.use_mdev(b, data, "matrix_mdev = kvm->arch.crypto.data")
        w.hook_target_detached(b, v, data, when=data != -1)
        w.step(t, "handle_pqap", "vfio_ap: if (!matrix_mdev->kvm) goto out; AQIC", body=b)
        t.label(unl)
        w.unlock(t, "handle_pqap", (w.M, None, None), text="vfio_ap: mutex_unlock(matrix_dev->lock)")
        b = Body()
        b.set(fl, False)
        t.label(out)
        w.unlock(t, "handle_pqap", (w.GHL, None, None), body=b, text="priv.c: mutex_unlock(pqap_hook_lock)")

    # ------------------------------------------------------------ open / close
    def op_open_device(self, w: World, t: ThreadBuilder, mdev: int, vm: int) -> None:
        m = mdev
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (open_device)")
        w.lock(t, w.VG, "vfio_device_open", index=m, body=b)
        w.notifier_open(t, m, vm, "vfio_device_open")
        w.lock(t, w.G, "vfio_ap_mdev_set_kvm", mode="w")
        w.lock(t, w.KL, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
        w.lock(t, w.M, "vfio_ap_mdev_set_kvm")
        b = Body()
        other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
        ok = Not(other)
        w.get_kvm(b, vm, when=ok)
        b.set(w.mkvm[m], vm, when=ok)
        b.set(w.data[vm], m, when=ok)
        w.set_masks(b, vm, b[w.sapm[m]], b[w.saqm[m]], m, when=ok)
        b.set(w.vopen[m], True, when=ok)
        w.set_ret(b, t, If(other, w_e("EPERM"), 0))
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.M, None, None), (w.KL, None, vm), (w.G, None, None, "w"), body=b,
                 text="other guest with this kvm: -EPERM; add ap_guest; kvm_get_kvm; "
                      "kvm->arch.crypto.data = matrix_mdev; set masks; unlock")
        w.unlock(t, "vfio_device_open", (w.VG, None, m))

    def op_close_device(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m, end = mdev, w.end_label(t)
        done = w.label(t, "close_done")
        kv = w.close_device_entry(t, m, "vfio_device_close", [(Or(Not(w.vopen[m].var), w.mkvm[m].var == -1), done)])
        w.lock(t, w.G, "vfio_ap_mdev_unset_kvm", mode="w")
        w.lock(t, w.KL, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
        w.lock(t, w.M, "vfio_ap_mdev_unset_kvm")
        self.unset_steps(w, t, m, kv)
        b = Body()
        w.use_kvm(b, kv, "mutex_unlock(&kvm->lock) after kvm_put_kvm")
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.KL, None, kv), (w.M, None, None), (w.G, None, None, "w"), body=b,
                 text="mutex_unlock(&kvm->lock); mutex_unlock(matrix_dev->lock); up_write(guests_lock)")
        t.label(done)
        b = Body()
        b.set(w.vopen[m], False)
        b.set(w.closing[m], False)
        b.set(w.local(t, "kvm", w.kslots), -1)
        w.unlock(t, "vfio_device_close", (w.VG, None, m), body=b)
        del end

    def unset_steps(self, w: World, t: ThreadBuilder, m: int, kv: Expr) -> None:
        """v17 order: clear masks, reset, kvm_put_kvm, THEN kvm->arch.crypto.data = NULL."""
        b = Body()
        w.clear_masks(b, kv)
        w.reset_mdev_queues(b, m)
        w.put_kvm(b, kv)
        w.step(t, "vfio_ap_mdev_unset_kvm", "del ap_guest; kvm_arch_crypto_clear_masks; "
                                            "vfio_ap_mdev_reset_queues; kvm_put_kvm", body=b)
        b = Body()
        w.use_kvm(b, kv, "kvm->arch.crypto.data = NULL after kvm_put_kvm")
        b.set_at(w.data, kv, -1)
        b.set(w.mkvm[m], -1)
        w.set_ret(b, t, 0)
        w.step(t, "vfio_ap_mdev_unset_kvm", "kvm->arch.crypto.data = NULL; matrix_mdev->kvm = NULL", body=b)

    # ------------------------------------------------------------ module load / unload, hook registry
    def op_vfio_ap_init(self, w: World, t: ThreadBuilder) -> None:
        if not w.cfg.ap_instructions:
            b = Body()
            w.set_ret(b, t, "ENODEV")
            w.step(t, "vfio_ap_init", "!ap_instructions_available(): -ENODEV (module not loaded)", body=b)
            return
        w.lock(t, w.GHL, "kvm_s390_pqap_hook_register")
        b = Body()
        taken = w.hook_reg.var != 0
        b.set(w.hook_reg, 1, when=Not(taken))
        b.set(w.registrations, w.registrations.var + 1, when=Not(taken))
        b.set(w.loaded, True, when=Not(taken))
        w.set_ret(b, t, If(taken, w_e("EACCES"), 0))
        w.unlock(t, "kvm_s390_pqap_hook_register", (w.GHL, None, None), body=b,
                 text="if (pqap_hook) -EACCES else pqap_hook = &vfio_ap's hook; mutex_unlock(pqap_hook_lock)")

    def op_vfio_ap_exit(self, w: World, t: ThreadBuilder) -> None:
        w.step(t, "vfio_ap_exit", "module refcount: no vfio device open",
               guard=And(*[Not(f.var) for f in w.vopen]))
        w.lock(t, w.GHL, "kvm_s390_pqap_hook_unregister")
        b = Body()
        mine = w.hook_reg.var == 1
        b.set(w.hook_reg, 0, when=mine)
        b.set(w.registrations, If(w.registrations.var > 0, w.registrations.var - 1, 0), when=mine)
        b.set(w.loaded, False)
        w.set_ret(b, t, If(mine, 0, w_e("EACCES")))
        w.unlock(t, "kvm_s390_pqap_hook_unregister", (w.GHL, None, None), body=b,
                 text="WARN_ON(hook mismatch -> -EACCES); pqap_hook = NULL; mutex_unlock(pqap_hook_lock)")

    def op_hook_register_other(self, w: World, t: ThreadBuilder) -> None:
        w.lock(t, w.GHL, "kvm_s390_pqap_hook_register")
        b = Body()
        taken = w.hook_reg.var != 0
        b.set(w.hook_reg, 2, when=Not(taken))
        b.set(w.registrations, w.registrations.var + 1, when=Not(taken))
        w.set_ret(b, t, If(taken, w_e("EACCES"), 0))
        w.unlock(t, "kvm_s390_pqap_hook_register", (w.GHL, None, None), body=b,
                 text="second driver: if (pqap_hook) -EACCES; mutex_unlock(pqap_hook_lock)")


__all__ = ["V17Design"]
