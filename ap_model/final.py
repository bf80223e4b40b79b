"""Design ``final``: the upstream vfio_ap design (v6.0 ... 2025).

Follows kernel-facts §2(e): Documentation/arch/s390/vfio-ap-locking.rst,
drivers/s390/crypto/vfio_ap_ops.c at 2dbddbe35860 (6.2) and the later stable
fixes (reset of filtered APIDs f848cba767e5, no reset outside the host
configuration b9bd10c43456). Lock order ``ap_perms_mutex -> guests_lock ->
kvm->lock -> mdevs_lock``; the PQAP hook is per KVM under
``kvm->arch.crypto.pqap_hook_rwsem``; the vfio core holds its own kvm
reference from open to close (2b48f52f2bff, 6.2), and group_lock around
open_device/close_device.

Every dynamic-era path (assign/unassign, apmask + in_use, queue probe/remove,
host configuration change) is written once here; v17 reuses them with its own
locks (``update_locks``/``update_releases``).
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or, Select
from checker.lang.program import ThreadBuilder

from . import rules
from .base import ApDesign, assign_body, refresh, unplug_adapter, unplug_domain
from .world import CLEAN, HOST, NODRV, VFIO, ZCRYPT, Body, Era, World

DYNAMIC_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
               "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
               "unassign_domain", "apmask_store", "aqmask_store", "unbind_queue", "adapter_standby",
               "adapter_online", "set_apie", "vfio_ap_init")


class FinalDesign(ApDesign):
    name = "final"
    summary = ("upstream vfio_ap v6.2+: guests_lock -> kvm->lock -> mdevs_lock, per-KVM pqap_hook_rwsem, "
               "shadow APCB filtering, in_use, vfio core kvm ref (vfio-ap-locking.rst; vfio_ap_ops.c 6.2/stable)")
    era = Era(dynamic=True, hook="rwsem", busy=False, matrix_lock="matrix_dev->mdevs_lock", guests_lock="mutex",
              vfio_lock=True, vfio_kvm_ref=True)
    supported: tuple[str, ...] = DYNAMIC_OPS
    reset_filtered = True  # f848cba767e5 (2023): APIDs filtered out of the shadow are reset
    assign_takes_perms = True  # assign_*_store take ap_perms_mutex first (6.x)

    # ------------------------------------------------------------ lock helpers of the era
    def update_locks(self, w: World, t: ThreadBuilder, fn: str, mk: Expr | int, perms: bool = False) -> None:
        """get_update_locks_for_mdev / _by_apqn / _for_queue: [P] -> G -> [kvm->lock] -> MD."""
        if perms:
            w.lock(t, w.P, fn)
        w.lock(t, w.G, fn)
        w.lock(t, w.KL, fn, when=_attached(mk), index=mk, kvm_index=mk)
        w.lock(t, w.M, fn)

    def update_releases(self, w: World, mk: Expr | int, perms: bool = False) -> list[tuple[Any, ...]]:
        rel: list[tuple[Any, ...]] = [(w.M, None, None), (w.KL, _attached(mk), mk), (w.G, None, None)]
        if perms:
            rel.append((w.P, None, None))
        return rel

    # ------------------------------------------------------------ PQAP intercept
    def pqap(self, w: World, t: ThreadBuilder, v: int) -> None:
        fl = w.in_pqap_flag(t, v)
        b = Body()
        b.set(fl, True)
        w.lock(t, w.HR, "handle_pqap", index=v, mode="r", body=b, kvm_index=v)
        hook = w.hook[v].var
        out = w.label(t, "pqap_out")
        b = Body()
        w.hook_target_freed(b, hook, when=hook != -1)
        w.lock(t, w.M, "handle_pqap", when=hook != -1, jumps=[(hook == -1, out)], body=b)
        b = Body()
        w.use_mdev(b, hook, "matrix_mdev = container_of(pqap_hook)", when=hook != -1)
        w.hook_target_detached(b, v, hook, when=hook != -1)
        w.unlock(t, "handle_pqap", (w.M, hook != -1, None), body=b,
                 text="vfio_ap: matrix_mdev = container_of(hook); if (!matrix_mdev->kvm) goto out; AQIC; unlock")
        b = Body()
        b.set(fl, False)
        t.label(out)
        w.unlock(t, "handle_pqap", (w.HR, None, v, "r"), body=b, text="priv.c: up_read(pqap_hook_rwsem)")

    # ------------------------------------------------------------ open / close
    def op_open_device(self, w: World, t: ThreadBuilder, mdev: int, vm: int) -> None:
        m, end = mdev, w.end_label(t)
        unlock_vg, failed = w.label(t, "open_unlock"), w.label(t, "open_failed")
        w.lock(t, w.VG, "vfio_device_group_open", index=m)
        b = Body()
        alive = w.mdev_alive(m)
        # kvm_vfio_release (from kvm_destroy_vm, before the struct kvm is freed) cleared group->kvm, and
        # kvm_get_kvm_safe takes a reference only while the count is non-zero: no kvm -> vfio_ap's
        # open_device returns -EINVAL (issue 8 #1)
        has_kvm = w.kvm_alive(vm)
        ok = And(alive, has_kvm)
        w.get_kvm(b, vm, when=ok)
        b.set(w.vkvm[m], vm, when=ok)
        w.set_ret(b, t, If(alive, If(has_kvm, 0, w_e("EINVAL")), w_e("ENODEV")))
        w.step(t, "vfio_device_get_kvm_safe", "vfio core: group->kvm && kvm_get_kvm_safe(group->kvm); "
                                              "vfio_ap_mdev_open_device: if (!vdev->kvm) return -EINVAL",
               body=b, jumps=[(Not(ok), unlock_vg)])
        w.lock(t, w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
        b = Body()
        b.set(w.hook[vm], m)
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
                 text="kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; up_write")
        self.update_locks(w, t, "get_update_locks_for_kvm", vm)
        b = Body()
        other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
        ok = Not(other)
        w.get_kvm(b, vm, when=ok)
        b.set(w.mkvm[m], vm, when=ok)
        w.set_masks(b, vm, b[w.sapm[m]], b[w.saqm[m]], m, when=ok)
        b.set(w.vopen[m], True, when=ok)
        w.set_ret(b, t, If(other, w_e("EPERM"), 0))
        w.unlock(t, "vfio_ap_mdev_set_kvm", *self.update_releases(w, vm), body=b,
                 text="if another mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                      "vfio_ap_mdev_update_guest_apcb; release_update_locks_for_kvm",
                 jumps=[(other, failed)])
        t.label(unlock_vg)
        w.unlock(t, "vfio_device_group_open", (w.VG, None, m), goto=end)
        t.label(failed)
        b = Body()
        w.put_kvm(b, vm)
        b.set(w.vkvm[m], -1)
        w.unlock(t, "vfio_device_put_kvm", (w.VG, None, m), body=b,
                 text="open_device failed: vfio core kvm_put_kvm; mutex_unlock(group_lock)")

    def op_close_device(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m, end = mdev, w.end_label(t)
        not_open, vput = w.label(t, "close_not_open"), w.label(t, "close_vfio_put")
        kv = w.close_device_entry(t, m, "vfio_device_group_close",
                                  [(Not(w.vopen[m].var), not_open), (w.mkvm[m].var == -1, vput)])
        w.lock(t, w.HR, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
        b = Body()
        b.set_at(w.hook, kv, -1)
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.HR, None, kv), body=b,
                 text="kvm->arch.crypto.pqap_hook = NULL; up_write")
        self.update_locks(w, t, "get_update_locks_for_kvm", kv)
        b = Body()
        self.unset_body(w, b, t, m, kv)
        w.unlock(t, "vfio_ap_mdev_unset_kvm", *self.update_releases(w, kv), body=b,
                 text="kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; kvm_put_kvm; "
                      "matrix_mdev->kvm = NULL; release_update_locks_for_kvm")
        t.label(vput)
        b = Body()
        vk = w.vkvm[m].var
        w.put_kvm(b, vk, when=vk != -1)
        b.set(w.vkvm[m], -1)
        b.set(w.vopen[m], False)
        b.set(w.closing[m], False)
        b.set(w.local(t, "kvm", w.kslots), -1)
        w.unlock(t, "vfio_device_put_kvm", (w.VG, None, m), body=b,
                 text="vfio core: kvm_put_kvm (may be the last: kvm_destroy_vm); mutex_unlock(group_lock)",
                 goto=end)
        t.label(not_open)
        b = Body()
        b.set(w.closing[m], False)
        w.unlock(t, "vfio_device_group_close", (w.VG, None, m), body=b)

    def unset_body(self, w: World, b: Body, t: ThreadBuilder, m: int, kv: Expr) -> None:
        """Under G, kvm->lock, MD: clear masks, reset, put, detach; kvm->lock is unlocked after the put."""
        w.clear_masks(b, kv)
        w.reset_mdev_queues(b, m)
        rc = Select([f.var for f in w.kvm.refs], kv, 0)  # type: ignore[union-attr]
        b.check(rc == 1, "memory-safety",
                "use after free: mutex_unlock(&kvm->lock) after the last kvm_put_kvm (kvm_destroy_vm freed kvm)")
        w.put_kvm(b, kv)
        b.set(w.mkvm[m], -1)
        w.set_ret(b, t, 0)

    # ------------------------------------------------------------ mdev lifecycle
    def op_mdev_remove(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m = mdev
        w.step(t, "vfio_unregister_group_dev", "wait until the vfio device is closed (request -> QEMU)",
               guard=Not(w.vopen[m].var))
        if w.G is not None:
            w.lock(t, w.G, "vfio_ap_mdev_remove", mode="w")
        w.lock(t, w.M, "vfio_ap_mdev_remove")
        b = Body()
        w.remove_mdev_body(b, m)
        w.set_ret(b, t, 0)
        rel: list[tuple[Any, ...]] = [(w.M, None, None)]
        if w.G is not None:
            rel.append((w.G, None, None, "w"))
        w.unlock(t, "vfio_ap_mdev_remove", *rel, body=b,
                 text="reset queues; unlink queues; list_del; unlock; kfree(matrix_mdev)")

    # ------------------------------------------------------------ sysfs: assign / unassign
    def _assign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"assign_{kind}_store"
        mk = w.mkvm[m].var
        self.update_locks(w, t, fn, mk, perms=self.assign_takes_perms)
        b = Body()
        ok = assign_body(w, b, t, m, kind, x)
        refresh(w, b, m, when=ok, reset_filtered=self.reset_filtered)
        w.unlock(t, fn, *self.update_releases(w, mk, perms=self.assign_takes_perms), body=b,
                 text=f"set bit; vfio_ap_mdev_validate_masks; vfio_ap_mdev_link_{kind}; "
                      "vfio_ap_mdev_filter_matrix; update_guest_apcb; unlock")

    def _unassign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"unassign_{kind}_store"
        mk = w.mkvm[m].var
        self.update_locks(w, t, fn, mk)
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
        f = w.apm[m] if kind == "adapter" else w.aqm[m]
        b.set(f, b[f].without_bit(x))
        (unplug_adapter if kind == "adapter" else unplug_domain)(w, b, m, x)
        w.set_ret(b, t, 0)
        w.unlock(t, fn, *self.update_releases(w, mk), body=b,
                 text=f"clear bit; vfio_ap_mdev_unlink_{kind}; hot unplug from shadow + guest; reset queues; unlock")

    def op_assign_adapter(self, w: World, t: ThreadBuilder, mdev: int, apid: int) -> None:
        self._assign(w, t, mdev, "adapter", apid)

    def op_assign_domain(self, w: World, t: ThreadBuilder, mdev: int, apqi: int) -> None:
        self._assign(w, t, mdev, "domain", apqi)

    def op_unassign_adapter(self, w: World, t: ThreadBuilder, mdev: int, apid: int) -> None:
        self._unassign(w, t, mdev, "adapter", apid)

    def op_unassign_domain(self, w: World, t: ThreadBuilder, mdev: int, apqi: int) -> None:
        self._unassign(w, t, mdev, "domain", apqi)

    # ------------------------------------------------------------ AP bus: queues
    def queue_mkvm(self, w: World, i: int, j: int) -> tuple[Expr, Expr]:
        own = w.owner_mdev(i, j)
        return own, Select([f.var for f in w.mkvm], own, -1)

    def remove_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        """vfio_ap_mdev_remove_queue (driver remove: unbind, reprobe, device unregister)."""
        own, mk = self.queue_mkvm(w, i, j)
        self.update_locks(w, t, "get_update_locks_for_queue", mk)
        b = Body()
        for m in w.mdevs:
            linked = own == m
            unplug_adapter(w, b, m, i, when=And(linked, b[w.sapm[m]].has(i), b[w.saqm[m]].has(j)))
        w.reset_queue(b, i, j)
        b.set(w.drv[i, j], NODRV)
        w.unlock(t, "vfio_ap_mdev_remove_queue", *self.update_releases(w, mk), body=b,
                 text="if in shadow: unplug APID + set masks + reset its queues; reset q (if configured); "
                      "unlink; kfree(q)")

    def probe_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        """vfio_ap_mdev_probe_queue."""
        own, mk = self.queue_mkvm(w, i, j)
        self.update_locks(w, t, "get_update_locks_by_apqn", mk)
        b = Body()
        b.set(w.drv[i, j], VFIO)
        for m in w.mdevs:
            refresh(w, b, m, when=And(own == m, Not(w.pending[m].var)), reset_filtered=self.reset_filtered)
        w.unlock(t, "vfio_ap_mdev_probe_queue", *self.update_releases(w, mk), body=b,
                 text="alloc q; link to mdev; unless a config add is pending: filter + update_guest_apcb; unlock")

    def zcrypt_probe(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        b = Body()
        b.set(w.drv[i, j], ZCRYPT)
        d = w.qdata[i, j]
        b.set(d, HOST, when=b[d] == CLEAN)
        w.step(t, "ap_device_probe", "zcrypt_cex4_queue_probe: bound to zcrypt (host use)", body=b)

    def zcrypt_remove(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        b = Body()
        w.reset_queue(b, i, j)
        b.set(w.drv[i, j], NODRV)
        w.step(t, "ap_queue_remove", "zcrypt unbinds: ap_zapq (if configured)", body=b)

    def reprobe(self, w: World, t: ThreadBuilder, qs: list[tuple[int, int]]) -> None:
        """ap_bus_revise_bindings -> __ap_revise_reserved -> device_reprobe, per queue of ``qs``."""
        for n, (i, j) in enumerate(qs):
            to_zc, to_vf = w.label(t, "to_zcrypt"), w.label(t, "to_vfio_ap")
            nxt = w.label(t, "reprobe_next") if n + 1 < len(qs) else w.end_label(t)
            d = w.drv[i, j].var
            res = w.reserved(None, i, j)
            w.lock(t, w.P, "__ap_revise_reserved")
            w.unlock(t, "__ap_revise_reserved", (w.P, None, None),
                     text=f"devres = {w.apqn(i, j)} in ap_perms.apm x aqm; mutex_unlock(ap_perms_mutex); "
                          "reprobe if devres != driver is default",
                     jumps=[(And(d == VFIO, res), to_zc), (And(d == ZCRYPT, Not(res)), to_vf)], goto=nxt)
            t.label(to_zc)
            self.remove_queue(w, t, i, j)
            self.zcrypt_probe(w, t, i, j)
            t.goto(nxt)
            t.label(to_vf)
            self.zcrypt_remove(w, t, i, j)
            self.probe_queue(w, t, i, j)
            if n + 1 < len(qs):
                t.label(nxt)

    def device_probe_perms(self, w: World, t: ThreadBuilder, i: int, j: int, zc: str) -> None:
        """ap_device_probe: devres (APQN reserved for the default drivers) read under ap_perms_mutex;
        a reserved queue goes to zcrypt (label ``zc``), else on to vfio_ap's probe."""
        w.lock(t, w.P, "ap_device_probe")
        w.unlock(t, "ap_device_probe", (w.P, None, None),
                 text=f"devres = {w.apqn(i, j)} in ap_perms.apm x aqm; mutex_unlock(ap_perms_mutex)",
                 jumps=[(w.reserved(None, i, j), zc)])

    def in_use_locks(self, w: World, t: ThreadBuilder, cond: Expr) -> None:
        w.lock(t, w.G, "vfio_ap_mdev_resource_in_use", when=cond)
        w.lock(t, w.M, "vfio_ap_mdev_resource_in_use", when=cond)

    def in_use_releases(self, w: World, cond: Expr) -> list[tuple[Any, ...]]:
        return [(w.M, cond, None), (w.G, cond, None), (w.P, None, None)]

    def op_apmask_store(self, w: World, t: ThreadBuilder, reserve: list[int], release: list[int]) -> None:
        self._mask_store(w, t, "ap", reserve, release)

    def op_aqmask_store(self, w: World, t: ThreadBuilder, reserve: list[int], release: list[int]) -> None:
        self._mask_store(w, t, "aq", reserve, release)

    def _mask_store(self, w: World, t: ThreadBuilder, kind: str, reserve: list[int], release: list[int]) -> None:
        """apmask_store / aqmask_store: P { newly reserved bits -> in_use (G -> MD); commit }; then reprobe."""
        fn = f"{kind}mask_store"
        w.lock(t, w.P, fn)
        mine = w.apmask if kind == "ap" else w.aqmask
        width = w.nA if kind == "ap" else w.nD
        rmask, cmask = MaskConst(width, reserve), MaskConst(width, release)
        newly = rules.newly_reserved(mine.var, mine.var | rmask)
        self.in_use_locks(w, t, newly.nonempty())
        b = Body()
        apms = [If(w.mdev_alive(m), w.apm[m].var, MaskConst(w.nA)) for m in w.mdevs]
        aqms = [If(w.mdev_alive(m), w.aqm[m].var, MaskConst(w.nD)) for m in w.mdevs]
        if kind == "ap":
            busy = rules.in_use(newly, w.aqmask.var, apms, aqms)
        else:
            busy = rules.in_use(w.apmask.var, newly, apms, aqms)
        new, _err = rules.mask_store(mine.var, (mine.var | rmask) & ~cmask, busy)
        b.set(mine, new)
        w.set_ret(b, t, If(busy, w_e("EBUSY"), 0))
        verify = "__verify_card_reservations" if kind == "ap" else "__verify_queue_reservations"
        w.unlock(t, f"{kind}mask_commit", *self.in_use_releases(w, newly.nonempty()), body=b,
                 text=f"{verify} -> vfio_ap in_use; commit ap_perms.{kind[1]}m; unlock")
        ids = sorted(set(reserve) | set(release))
        qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else \
             [(i, j) for i in range(w.nA) for j in ids]
        self.reprobe(w, t, qs)

    def op_unbind_queue(self, w: World, t: ThreadBuilder, apid: int, apqi: int) -> None:
        end = w.end_label(t)
        w.step(t, "unbind_store", f"device_release_driver({w.apqn(apid, apqi)})",
               jumps=[(w.drv[apid, apqi].var != VFIO, end)])
        self.remove_queue(w, t, apid, apqi)

    # ------------------------------------------------------------ AP bus: host configuration
    def op_adapter_standby(self, w: World, t: ThreadBuilder, apid: int) -> None:
        x = apid
        w.lock(t, w.G, "vfio_ap_on_cfg_changed")
        for m in w.mdevs:
            mk = w.mkvm[m].var
            att = And(w.mdev_alive(m), mk != -1)
            w.lock(t, w.KL, "vfio_ap_on_cfg_changed", when=att, index=mk, kvm_index=mk)
            w.lock(t, w.M, "vfio_ap_on_cfg_changed")
            b = Body()
            unplug_adapter(w, b, m, x, when=w.mdev_alive(m), reset=False)
            w.unlock(t, "vfio_ap_on_cfg_changed", (w.M, None, None), (w.KL, att, mk), body=b,
                     text=f"vfio_ap_mdev_cfg_remove: unplug adapter {w.cfg.adapters[x]} from mdev{m}; unlock")
        b = Body()
        b.set(w.info_apm, w.info_apm.var.without_bit(x))
        w.unlock(t, "vfio_ap_on_cfg_changed", (w.G, None, None), body=b, text="matrix_dev->info = new QCI; unlock")
        for j in range(w.nD):
            zc, nxt = w.label(t, "zc_remove"), w.label(t, "next_q")
            d = w.drv[x, j].var
            w.step(t, "ap_scan_bus", f"device_unregister({w.apqn(x, j)})",
                   jumps=[(d == ZCRYPT, zc), (d != VFIO, nxt)])
            self.remove_queue(w, t, x, j)
            t.goto(nxt)
            t.label(zc)
            self.zcrypt_remove(w, t, x, j)
            t.label(nxt)
        w.step(t, "ap_scan_bus", "scan done")

    def op_adapter_online(self, w: World, t: ThreadBuilder, apid: int) -> None:
        x = apid
        w.lock(t, w.G, "vfio_ap_on_cfg_changed")
        w.lock(t, w.M, "vfio_ap_on_cfg_changed")
        b = Body()
        for m in w.mdevs:
            b.set(w.pending[m], And(w.mdev_alive(m), w.apm[m].var.has(x)))
        b.set(w.info_apm, w.info_apm.var.with_bit(x))
        for j in range(w.nD):  # assumption: a card entering the configuration comes up zeroized
            b.set(w.qdata[x, j], CLEAN)
        w.unlock(t, "vfio_ap_on_cfg_changed", (w.M, None, None), (w.G, None, None), body=b,
                 text="vfio_ap_mdev_cfg_add: record apm_add; matrix_dev->info = new QCI; unlock")
        for j in range(w.nD):
            zc, nxt = w.label(t, "zc_probe"), w.label(t, "next_q")
            w.step(t, "ap_scan_bus", f"device_register({w.apqn(x, j)})",
                   jumps=[(Or(w.drv[x, j].var != NODRV, Not(w.info_aqm.var.has(j))), nxt)])
            self.device_probe_perms(w, t, x, j, zc)
            self.probe_queue(w, t, x, j)
            t.goto(nxt)
            t.label(zc)
            self.zcrypt_probe(w, t, x, j)
            t.label(nxt)
        w.lock(t, w.G, "vfio_ap_on_scan_complete")
        for m in w.mdevs:
            mk = w.mkvm[m].var
            pend = w.pending[m].var
            w.lock(t, w.KL, "vfio_ap_on_scan_complete", when=And(pend, mk != -1), index=mk, kvm_index=mk)
            w.lock(t, w.M, "vfio_ap_on_scan_complete")
            b = Body()
            refresh(w, b, m, when=pend, reset_filtered=self.reset_filtered)
            b.set(w.pending[m], False)
            w.unlock(t, "vfio_ap_on_scan_complete", (w.M, None, None), (w.KL, And(pend, mk != -1), mk), body=b,
                     text=f"mdev{m}: filter matrix; update_guest_apcb; clear apm_add; unlock")
        w.unlock(t, "vfio_ap_on_scan_complete", (w.G, None, None))


def w_e(name: str) -> int:
    from .world import E

    return E[name]


def _attached(mk: Expr | int) -> Expr | None:
    """Condition of ``if (matrix_mdev->kvm) mutex_lock(&kvm->lock)``; None for a known VM."""
    return None if isinstance(mk, int) else mk != -1
