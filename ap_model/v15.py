"""Designs ``v15`` and ``v16``: the dynamic-configuration series as posted (Apr / May 2021).

``v15`` follows kernel-facts §2(b) ([S-v15], built on (a2) 0cc00c8d4050):
one global ``matrix_dev->lock``; the ``kvm_busy`` open-coded lock around
set/unset_kvm (the lock is dropped while the masks are written); the
unlocked per-mdev PQAP hook (``kvm->arch.crypto.pqap_hook`` read without a
lock, module reference taken); hot plug: ``assign_adapter_store`` takes
``matrix_dev->lock`` with ``mutex_trylock`` and, still holding it, updates the
guest through ``kvm_arch_crypto_set_masks``, which (<= v5.14) takes
``kvm->lock`` itself — the edge Halil's lockdep splat closes into the cycle
``vcpu->mutex -> matrix_dev->lock -> kvm->lock -> vcpu->mutex``; the
``ap_perms_mutex`` is taken inside validation; unassign does not reset.

``v16`` follows §2(c) ([S-v16], "v16 08/14 allow hot plug/unplug"): every
hot-plug path commits through ``vfio_ap_mdev_commit_apcb``, which sets
``kvm_busy``, DROPS ``matrix_dev->lock`` around ``kvm_arch_crypto_set_masks``
and re-takes it; unassign resets the unplugged queues after the commit.

AP bus ownership (§1.3, §2(b)/(c)): apmask/aqmask writes with in_use =
``mutex_trylock(matrix_dev->lock)`` {verify_no_sharing} under ``ap_perms_mutex``;
queue probe/remove (reprobe, manual unbind) under ``matrix_dev->lock`` with the
guest update of the era (v15: set_masks with the lock held; v16: commit_apcb).
Not modelled for these two: host configuration changes (not retrieved, §2(b)).
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or, Select
from checker.lang.program import ThreadBuilder

from . import rules
from .base import _and, assign_body, refresh
from .final import FinalDesign, w_e
from .world import NODRV, VFIO, Body, Era, World, eq

SERIES_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
              "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
              "unassign_domain", "set_apie", "vfio_ap_init", "apmask_store", "aqmask_store", "unbind_queue")


class V15Design(FinalDesign):
    name = "v15"
    summary = ("v15 dynamic-config series (Apr 2021) on 0cc00c8d4050: one matrix_dev->lock, kvm_busy, "
               "unlocked per-mdev pqap hook, set_masks under matrix_dev->lock (lockdep splat [S-v15])")
    era = Era(dynamic=True, hook="module", busy=True, matrix_lock="matrix_dev->lock", guests_lock="",
              vfio_lock=False, vfio_kvm_ref=False, masks_take_kvm_lock=True)
    supported = SERIES_OPS
    _reset_rows: tuple[Expr, Expr] | None = None
    commit_drops_lock = False  # v16: vfio_ap_mdev_commit_apcb drops matrix_dev->lock
    unassign_resets = False  # v16: "reset queues after adapter/domain unassignment"

    def declare(self, w: World) -> None:
        w.pending = []

    # ------------------------------------------------------------ PQAP: unlocked module hook, kvm_busy wait
    def pqap(self, w: World, t: ThreadBuilder, v: int) -> None:
        fl = w.in_pqap_flag(t, v)
        hk = w.local(t, "hook", w.mslots)
        out, relock, wait = w.label(t, "pqap_out"), w.label(t, "pqap_lock"), w.label(t, "pqap_wait")
        b = Body()
        b.set(fl, True)
        b.set(hk, w.hook[v].var)
        w.step(t, "handle_pqap", "priv.c: hook = kvm->arch.crypto.pqap_hook (no lock); try_module_get",
               body=b, jumps=[(w.hook[v].var == -1, out)])
        h = hk.var
        b = Body()
        w.hook_target_freed(b, h, when=h != -1)
        t.label(relock)
        w.lock(t, w.M, "handle_pqap", body=b)
        b = Body()
        w.use_mdev(b, h, "matrix_mdev = container_of(pqap_hook)")
        busy = w.busy(h)
        w.hook_target_detached(b, v, h, when=Not(busy))
        w.unlock(t, "handle_pqap", (w.M, Not(busy), None), body=b, jumps=[(busy, wait)], goto=out,
                 text="vfio_ap: if (matrix_mdev->kvm_busy) wait; if (!matrix_mdev->kvm) goto out; AQIC; unlock")
        t.label(wait)
        w.unlock(t, "handle_pqap", (w.M, None, None), text="wait_event(kvm_busy == false): mutex_unlock")
        w.wait_flag(t, "handle_pqap", h)
        t.goto(relock)
        b = Body()
        b.set(fl, False)
        b.set(hk, -1)
        t.label(out)
        w.step(t, "handle_pqap", "priv.c: module_put", body=b)

    # ------------------------------------------------------------ masks: kvm->lock taken inside (<= v5.14)
    def set_masks_locked(self, w: World, t: ThreadBuilder, fn: str, kv: Expr | int, apm: Expr | None,
                         aqm: Expr | None, src: Expr | int | None, release_m: bool, clear: bool = False) -> None:
        """kvm_arch_crypto_set_masks / clear_masks, which lock kvm->lock themselves."""
        fn_k = "kvm_arch_crypto_set_masks" if not clear else "kvm_arch_crypto_clear_masks"
        if isinstance(kv, int):
            kvs, labels = [kv], None
        else:  # one write step per VM: the index is a constant there (exact race footprints)
            kvs = list(w.vms)
            labels = [w.label(t, f"masks_kvm{k}") for k in kvs]
        after = w.label(t, "masks_done") if labels else None
        jumps = [(eq(kv, k), lab) for k, lab in zip(kvs, labels)] if labels else []
        w.lock(t, w.KL, fn_k, index=kv, kvm_index=kv, jumps=jumps)
        for n, k in enumerate(kvs):
            if labels:
                t.label(labels[n])
            b = Body()
            if clear:
                w.clear_masks(b, k)
            else:
                assert apm is not None and aqm is not None and src is not None
                w.set_masks(b, k, apm, aqm, src)
            rel = [(w.KL, None, k)] + ([(w.M, None, None)] if release_m else [])
            w.unlock(t, fn_k, *rel, body=b, goto=after,
                     text="kvm_s390_vcpu_block_all; write APCB; VSIE restart; unblock; mutex_unlock(kvm->lock)"
                          + ("; mutex_unlock(matrix_dev->lock)" if release_m else ""))
        if after:
            t.label(after)
            w.step(t, fn_k, "return")

    # ------------------------------------------------------------ open / release (a2 kvm_busy pattern)
    def op_open_device(self, w: World, t: ThreadBuilder, mdev: int, vm: int) -> None:
        m, end = mdev, w.end_label(t)
        w.lock(t, w.M, "vfio_ap_mdev_group_notifier")
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (open)")
        other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
        ok = Not(other)
        w.get_kvm(b, vm, when=ok)
        w.busy_set(b, t, m, True, when=ok)
        w.set_ret(b, t, If(other, w_e("EPERM"), 0))
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.M, None, None), body=b, jumps=[(other, end)],
                 text="other mdev has this kvm: -EPERM; kvm_get_kvm; kvm_busy = true; mutex_unlock")
        self.set_masks_locked(w, t, "vfio_ap_mdev_set_kvm", vm, w.sapm[m].var, w.saqm[m].var, m, False)
        w.lock(t, w.M, "vfio_ap_mdev_set_kvm")
        b = Body()
        b.set(w.hook[vm], m)
        b.set(w.mkvm[m], vm)
        w.busy_set(b, t, m, False)
        b.set(w.vopen[m], True)
        w.unlock(t, "vfio_ap_mdev_set_kvm", (w.M, None, None), body=b,
                 text="kvm->arch.crypto.pqap_hook = &pqap_hook; matrix_mdev->kvm = kvm; kvm_busy = false; "
                      "wake_up_all; unlock")

    def op_close_device(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m = mdev
        lk = w.local(t, "kvm", w.kslots)
        wait, done = w.label(t, "release_wait"), w.label(t, "release_done")
        top = w.entry_label(t, "release_lock")
        w.lock(t, w.M, "vfio_ap_mdev_release")
        b = Body()
        b.set(lk, w.mkvm[m].var)
        b.set(w.closing[m], True)
        busy = w.busy(m)
        nokvm = And(Not(busy), w.mkvm[m].var == -1)
        w.busy_set(b, t, m, True, when=And(Not(busy), w.mkvm[m].var != -1))
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.M, Not(nokvm), None), body=b,
                 jumps=[(busy, wait), (nokvm, done)],
                 text="wait for !kvm_busy; if (kvm) { kvm_busy = true; mutex_unlock }")
        kv = lk.var
        self.set_masks_locked(w, t, "vfio_ap_mdev_unset_kvm", kv, None, None, None, False, clear=True)
        w.lock(t, w.M, "vfio_ap_mdev_unset_kvm")
        b = Body()
        w.reset_mdev_queues(b, m)
        b.set_at(w.hook, kv, -1)
        w.put_kvm(b, kv)
        b.set(w.mkvm[m], -1)
        w.busy_set(b, t, m, False)
        b.set(w.vopen[m], False)
        b.set(w.closing[m], False)
        w.set_ret(b, t, 0)
        w.unlock(t, "vfio_ap_mdev_unset_kvm", (w.M, None, None), body=b, goto=w.end_label(t),
                 text="vfio_ap_mdev_reset_queues; pqap_hook = NULL; kvm_put_kvm; matrix_mdev->kvm = NULL; "
                      "kvm_busy = false; wake_up_all; unlock")
        t.label(done)
        b = Body()
        b.set(w.vopen[m], False)
        b.set(w.closing[m], False)
        w.unlock(t, "vfio_ap_mdev_release", (w.M, None, None), body=b, goto=w.end_label(t))
        t.label(wait)
        w.unlock(t, "vfio_ap_mdev_release", (w.M, None, None), text="wait_event(!kvm_busy): mutex_unlock")
        w.wait_flag(t, "vfio_ap_mdev_release", m)
        t.goto(top)

    def op_mdev_remove(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        m = mdev
        w.step(t, "vfio_del_group_dev", "wait until the vfio device is released", guard=Not(w.vopen[m].var))
        w.lock(t, w.M, "vfio_ap_mdev_remove")
        b = Body()
        w.remove_mdev_body(b, m)
        w.unlock(t, "vfio_ap_mdev_remove", (w.M, None, None), body=b,
                 text="vfio_ap_mdev_reset_queues; list_del; unlock; kfree(matrix_mdev)")

    # ------------------------------------------------------------ hot plug
    def _commit(self, w: World, t: ThreadBuilder, fn: str, m: int, end: str) -> None:
        """After the filter changed the shadow of an attached mdev (M held): update the guest."""
        mk = w.mkvm[m].var
        if not self.commit_drops_lock:
            # v15: kvm_arch_crypto_set_masks under matrix_dev->lock (takes kvm->lock inside)
            self.set_masks_locked(w, t, fn, mk, w.sapm[m].var, w.saqm[m].var, m, True)
            return
        b = Body()
        w.busy_set(b, t, m, True)
        w.unlock(t, "vfio_ap_mdev_commit_apcb", (w.M, None, None), body=b,
                 text="kvm_busy = true; mutex_unlock(matrix_dev->lock)")
        self.set_masks_locked(w, t, "vfio_ap_mdev_commit_apcb", mk, w.sapm[m].var, w.saqm[m].var, m, False)
        w.lock(t, w.M, "vfio_ap_mdev_commit_apcb")
        b = Body()
        w.busy_set(b, t, m, False)
        self.after_commit(w, b, m)
        w.unlock(t, "vfio_ap_mdev_commit_apcb", (w.M, None, None), body=b,
                 text="kvm_busy = false; wake_up_all; (unassign: reset unplugged queues); unlock")

    def after_commit(self, w: World, b: Body, m: int) -> None:
        """v16 unassign: reset the queues no longer in the shadow (set per operation)."""
        rows = getattr(self, "_reset_rows", None)
        if rows is not None:
            w.reset_mdev_queues(b, m, rows=rows[0], cols=rows[1])

    def _assign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"assign_{kind}_store"
        end, busy_out = w.end_label(t), w.label(t, "assign_busy")
        w.trylock(t, w.M, fn, fail=end)
        busy = w.busy(m)
        w.lock(t, w.P, "ap_apqn_in_matrix_owned_by_def_drv", when=Not(busy), jumps=[(busy, busy_out)])
        b = Body()
        ok = assign_body(w, b, t, m, kind, x)
        changed, _, _ = refresh(w, b, m, when=ok, apply=False, reset_filtered=False)
        need = And(changed, w.mkvm[m].var != -1)
        ret = w.ret(t)
        refused: list[tuple[Expr | None, str]] = [(Not(ok), "validate: -EADDRNOTAVAIL (reserved) or -EADDRINUSE")]
        if ret is not None:  # the errno tells which check refused
            refused = [(eq(b[ret], w_e("EADDRNOTAVAIL")), "validate: APQN reserved for zcrypt: -EADDRNOTAVAIL"),
                       (eq(b[ret], w_e("EADDRINUSE")), "validate: APQN assigned to another mdev: -EADDRINUSE")]
        w.unlock(t, fn, (w.P, None, None), (w.M, Not(need), None), body=b, jumps=[(Not(need), end)],
                 text="validate (reserved: EADDRNOTAVAIL; sharing: EADDRINUSE); link; filter; "
                      "if unchanged or no guest: unlock",
                 branches=[*refused, (ok, "set bit; link; vfio_ap_mdev_filter_matrix"),
                           (Not(need), "mutex_unlock(ap_perms_mutex); mutex_unlock(matrix_dev->lock)"),
                           (need, "mutex_unlock(ap_perms_mutex); shadow changed, guest running: commit")])
        self._reset_rows = None
        self._commit(w, t, fn, m, end)
        t.goto(end)
        t.label(busy_out)
        b = Body()
        w.set_ret(b, t, "EBUSY")
        w.unlock(t, fn, (w.M, None, None), body=b, text="kvm_busy: -EBUSY; unlock")

    def _unassign(self, w: World, t: ThreadBuilder, m: int, kind: str, x: int) -> None:
        fn = f"unassign_{kind}_store"
        end, busy_out = w.end_label(t), w.label(t, "unassign_busy")
        w.lock(t, w.M, fn)
        busy = w.busy(m)
        b = Body()
        w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
        f = w.apm[m] if kind == "adapter" else w.aqm[m]
        old_a, old_q = w.sapm[m].var, w.saqm[m].var
        b.set(f, f.var.without_bit(x), when=Not(busy))
        changed, na, nq = refresh(w, b, m, when=Not(busy), apply=False, reset_filtered=False)
        need = And(changed, w.mkvm[m].var != -1)
        gone_rows = MaskConst(w.nA, [x]) if kind == "adapter" else old_a
        gone_cols = old_q if kind == "adapter" else MaskConst(w.nD, [x])
        if self.unassign_resets:  # queues unplugged from a guest-less mdev are reset right away
            w.reset_mdev_queues(b, m, rows=gone_rows, cols=gone_cols, when=And(Not(busy), Not(need)))
        w.set_ret(b, t, If(busy, w_e("EBUSY"), 0))
        w.unlock(t, fn, (w.M, Not(need), None), body=b, jumps=[(Not(need), end)],
                 text="if (kvm_busy) -EBUSY; clear bit; unlink; filter; if unchanged or no guest: unlock")
        self._reset_rows = (MaskConst(w.nA, [x]), MaskConst(w.nD, list(range(w.nD)))) \
            if (self.unassign_resets and kind == "adapter") else \
            ((MaskConst(w.nA, list(range(w.nA))), MaskConst(w.nD, [x])) if self.unassign_resets else None)
        self._commit(w, t, fn, m, end)
        self._reset_rows = None
        del busy_out, na, nq


    # ------------------------------------------------------------ AP bus: apmask/aqmask + in_use, queues
    def _mask_store(self, w: World, t: ThreadBuilder, kind: str, reserve: list[int], release: list[int]) -> None:
        """apmask_store / aqmask_store: ``P{ newly reserved -> in_use = trylock(matrix_dev->lock)
        (fail -> -EBUSY) {verify_no_sharing}; commit }``, then the reprobe (kernel-facts §1.3, §2(b)).

        Abstraction: in_use is consulted whenever the write sets bits (``reserve`` non-empty)."""
        fn = f"{kind}mask_store"
        end = w.end_label(t)
        mine = w.apmask if kind == "ap" else w.aqmask
        width = w.nA if kind == "ap" else w.nD
        rmask, cmask = MaskConst(width, reserve), MaskConst(width, release)
        newly = rules.newly_reserved(mine.var, mine.var | rmask)
        busy_lab = w.label(t, "in_use_trylock_failed")
        w.lock(t, w.P, fn)
        if reserve:
            w.trylock(t, w.M, "vfio_ap_mdev_resource_in_use", fail=busy_lab)
        b = Body()
        apms = [If(w.mdev_alive(m), w.apm[m].var, MaskConst(w.nA)) for m in w.mdevs]
        aqms = [If(w.mdev_alive(m), w.aqm[m].var, MaskConst(w.nD)) for m in w.mdevs]
        busy = rules.in_use(newly, w.aqmask.var, apms, aqms) if kind == "ap" else \
            rules.in_use(w.apmask.var, newly, apms, aqms)
        new, _err = rules.mask_store(mine.var, (mine.var | rmask) & ~cmask, busy)
        b.set(mine, new)
        w.set_ret(b, t, If(busy, w_e("EBUSY"), 0))
        rel = [(w.M, None, None), (w.P, None, None)] if reserve else [(w.P, None, None)]
        verify = "__verify_card_reservations" if kind == "ap" else "__verify_queue_reservations"
        w.unlock(t, f"{kind}mask_commit", *rel, body=b,
                 text=f"{verify} -> vfio_ap in_use: verify_no_sharing; commit ap_perms.{kind[1]}m; unlock")
        ids = sorted(set(reserve) | set(release))
        qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else \
             [(i, j) for i in range(w.nA) for j in ids]
        self.reprobe(w, t, qs)
        if reserve:
            t.goto(end)
            t.label(busy_lab)
            b = Body()
            w.set_ret(b, t, "EBUSY")
            w.unlock(t, fn, (w.P, None, None), body=b,
                     text="in_use: mutex_trylock(matrix_dev->lock) failed: -EBUSY; mutex_unlock(ap_perms_mutex)")

    def _queue_update(self, w: World, t: ThreadBuilder, fn: str, i: int, j: int, probe: bool) -> None:
        """v15: ``M{ link/unlink; refresh -> kvm_arch_crypto_set_masks (kvm->lock inside, M held);
        (remove: reset q; free q) }``. v16: ``M{ link/unlink; WAIT(kvm_busy); refresh -> commit_apcb
        (kvm_busy = true, drop M, set_masks, re-take M, kvm_busy = false); (remove: reset; free q) }``."""
        own = w.owner_mdev(i, j)
        mk = Select([f.var for f in w.mkvm], own, -1)
        done, wait = w.label(t, "queue_done"), w.label(t, "queue_wait")
        top = w.entry_label(t, "queue_lock")
        w.lock(t, w.M, fn)
        busy = w.busy(own) if self.commit_drops_lock else None
        if busy is not None:  # v16: WAIT(kvm_busy) before the refresh
            busy = And(own != -1, busy)
        b = Body()
        b.set(w.drv[i, j], VFIO if probe else NODRV, when=Not(busy) if busy is not None else None)
        need_any = []
        for m in w.mdevs:
            ch, _, _ = refresh(w, b, m, when=_and(own == m, Not(busy) if busy is not None else None),
                               apply=False, reset_filtered=False)
            need_any.append(And(ch, b[w.mkvm[m]] != -1))
        need = Or(*need_any)
        if not probe:
            w.reset_queue(b, i, j, when=Not(need) if busy is None else And(Not(busy), Not(need)))
        if self.commit_drops_lock:
            w.busy_set(b, t, own, True, when=And(Not(busy), need))  # type: ignore[arg-type]
        what = "alloc q; link" if probe else "unlink"
        jumps = ([(busy, wait)] if busy is not None else []) + [(Not(need), done)]
        w.step(t, fn, f"{what}; vfio_ap_mdev_refresh_apcb: filter; if unchanged or no guest: "
                      + ("done" if probe else "reset q; free q"), body=b, jumps=jumps)
        sapm = Select([f.var for f in w.sapm], own, MaskConst(w.nA))
        saqm = Select([f.var for f in w.saqm], own, MaskConst(w.nD))
        if self.commit_drops_lock:
            w.unlock(t, "vfio_ap_mdev_commit_apcb", (w.M, None, None), text="kvm_busy = true; mutex_unlock")
        self.set_masks_locked(w, t, "vfio_ap_mdev_commit_apcb", mk, sapm, saqm, own, False)
        if self.commit_drops_lock:
            w.lock(t, w.M, "vfio_ap_mdev_commit_apcb")
        b = Body()
        if self.commit_drops_lock:
            w.busy_set(b, t, own, False)  # type: ignore[arg-type]
        if not probe:
            w.reset_queue(b, i, j)
        w.step(t, fn, ("kvm_busy = false; wake_up_all; " if self.commit_drops_lock else "")
               + ("" if probe else "vfio_ap_mdev_reset_queue; free q"), body=b)
        t.label(done)
        end = w.label(t, "queue_out")
        w.unlock(t, fn, (w.M, None, None), text="mutex_unlock(matrix_dev->lock)", goto=end)
        t.label(wait)
        w.unlock(t, fn, (w.M, None, None), text="wait_event(!kvm_busy): mutex_unlock")
        w.wait_flag(t, fn, own, when=own != -1)
        t.goto(top)
        t.label(end)
        w.step(t, fn, "return")

    def remove_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        self._queue_update(w, t, "vfio_ap_mdev_remove_queue", i, j, probe=False)

    def probe_queue(self, w: World, t: ThreadBuilder, i: int, j: int) -> None:
        self._queue_update(w, t, "vfio_ap_mdev_probe_queue", i, j, probe=True)


class V16Design(V15Design):
    name = "v16"
    summary = ("v16 dynamic-config series (May 2021): vfio_ap_mdev_commit_apcb drops matrix_dev->lock "
               "around kvm_arch_crypto_set_masks under kvm_busy; unassign resets queues (v16 08/14)")
    commit_drops_lock = True
    unassign_resets = True


__all__ = ["V15Design", "V16Design"]
