"""The hot-plug paths of the v15/v16 series (assign, unassign, vfio_ap_mdev_commit_apcb, queue probe/remove),
each written once; ``v16`` differs in vfio_ap_mdev_commit_apcb (drops matrix_dev->lock under kvm_busy), in
the queue paths (wait for kvm_busy first) and in unassign (resets the unplugged queues)."""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or, Select

from ..kernel.bodies import _and, assign_body, assign_refusals, refresh
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import NODRV, VFIO, Body, E


def _commit(k: K, fn: str, m: int, drops_lock: bool, reset: tuple[Expr, Expr] | None) -> None:
    """After the filter changed the shadow of an attached mdev (matrix_dev->lock held): update the guest.
    v15: kvm_arch_crypto_set_masks under matrix_dev->lock (kvm->lock taken inside, both dropped together).
    v16: kvm_busy = true; drop the lock; set masks; re-take; kvm_busy = false; reset ``reset`` (unassign)."""
    w = k.w
    mk = w.mkvm[m].var
    if not drops_lock:
        k.call("kvm_arch_crypto_set_masks", fn=fn, kv=mk, apm=w.sapm[m].var, aqm=w.saqm[m].var, src=m,
               release_m=True)
        return
    b = Body()
    w.busy_set(b, k.t, m, True)
    k.unlock("vfio_ap_mdev_commit_apcb", (w.M, None, None), body=b,
             text="kvm_busy = true; mutex_unlock(matrix_dev->lock)")
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_commit_apcb", kv=mk, apm=w.sapm[m].var, aqm=w.saqm[m].var,
           src=m, release_m=False)
    k.lock(w.M, "vfio_ap_mdev_commit_apcb")
    b = Body()
    w.busy_set(b, k.t, m, False)
    if reset is not None:
        w.reset_mdev_queues(b, m, rows=reset[0], cols=reset[1])
    k.unlock("vfio_ap_mdev_commit_apcb", (w.M, None, None), body=b,
             text="kvm_busy = false; wake_up_all; " + ("reset the unplugged queues; " if reset is not None else "")
             + "unlock")


@kernel(OPS, name="vfio_ap_mdev_commit_apcb")
def commit_v15(k: K, fn: str, m: int, reset: tuple[Expr, Expr] | None = None) -> None:
    """v15: the guest update with matrix_dev->lock held."""
    _commit(k, fn, m, False, reset)


@kernel(OPS, name="vfio_ap_mdev_commit_apcb")
def commit_v16(k: K, fn: str, m: int, reset: tuple[Expr, Expr] | None = None) -> None:
    """v16 08/14: the guest update with matrix_dev->lock dropped under kvm_busy."""
    _commit(k, fn, m, True, reset)


def _assign(k: K, m: int, kind: str, x: int) -> None:
    """mutex_trylock(matrix_dev->lock) (fail: return); kvm_busy -> -EBUSY; set bit; validate (reservation
    check takes ap_perms_mutex inside); link; filter; if the shadow changed and a guest is attached: commit."""
    w = k.w
    fn = f"assign_{kind}_store"
    end, busy_out = k.end(), k.label("assign_busy")
    again = _trylock(k, fn)
    busy = w.busy(m)
    k.lock(w.P, "ap_apqn_in_matrix_owned_by_def_drv", when=Not(busy), jumps=[(busy, busy_out)],
           skip="kvm_busy: -EBUSY")
    b = Body()
    ok = assign_body(w, b, k.t, m, kind, x)
    changed, _, _ = refresh(w, b, m, when=ok, apply=False, reset_filtered=False)
    need = And(changed, w.mkvm[m].var != -1)
    refused = assign_refusals(w, b, k.t, ok)
    k.unlock(fn, (w.P, None, None), (w.M, Not(need), None), body=b, jumps=[(Not(need), end)],
             text="validate (reserved: EADDRNOTAVAIL; sharing: EADDRINUSE); link; filter; "
                  "if unchanged or no guest: unlock",
             branches=[*refused, (ok, "set bit; link; vfio_ap_mdev_filter_matrix"),
                       (Not(need), "mutex_unlock(ap_perms_mutex); mutex_unlock(matrix_dev->lock)"),
                       (need, "mutex_unlock(ap_perms_mutex); shadow changed, guest running: commit")])
    k.call("vfio_ap_mdev_commit_apcb", fn=fn, m=m)
    k.goto(end)
    k.at(busy_out)
    b = Body()
    k.ret(b, "EBUSY")
    k.unlock(fn, (w.M, None, None), body=b, text="kvm_busy: -EBUSY; unlock", goto=end)
    _eagain(k, fn, again)


def _trylock(k: K, fn: str) -> str:
    """if (!mutex_trylock(&matrix_dev->lock)) return -EAGAIN; -- returns the failure label."""
    again = k.label("trylock_failed")
    k.t.trylock(k.w.M, fn, fail=again)
    return again


def _eagain(k: K, fn: str, again: str) -> None:
    """The -EAGAIN return of a failed mutex_trylock (the last step the caller emits)."""
    k.at(again)
    b = Body()
    k.ret(b, "EAGAIN")
    k.step(fn, "mutex_trylock(matrix_dev->lock) failed: return -EAGAIN", body=b)


def _unassign(k: K, m: int, kind: str, x: int, v16: bool) -> None:
    """matrix_dev->lock { kvm_busy -> -EBUSY; clear bit; unlink; filter; if the shadow changed and a guest is
    attached: commit }. v15 takes the lock with mutex_trylock (-EAGAIN); v16 with mutex_lock, and resets the
    unplugged queues (right away without a guest)."""
    w = k.w
    fn = f"unassign_{kind}_store"
    end = k.end()
    again = "" if v16 else _trylock(k, fn)
    if v16:
        k.lock(w.M, fn)
    busy = w.busy(m)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    f = w.apm[m] if kind == "adapter" else w.aqm[m]
    old_a, old_q = w.sapm[m].var, w.saqm[m].var
    b.set(f, f.var.without_bit(x), when=Not(busy))
    changed, _, _ = refresh(w, b, m, when=Not(busy), apply=False, reset_filtered=False)
    need = And(changed, w.mkvm[m].var != -1)
    gone_rows = MaskConst(w.nA, [x]) if kind == "adapter" else old_a
    gone_cols = old_q if kind == "adapter" else MaskConst(w.nD, [x])
    if v16:
        w.reset_mdev_queues(b, m, rows=gone_rows, cols=gone_cols, when=And(Not(busy), Not(need)))
    k.ret(b, If(busy, E["EBUSY"], 0))
    guest = w.mkvm[m].var != -1
    k.unlock(fn, (w.M, Not(need), None), body=b, jumps=[(Not(need), end)],
             text="if (kvm_busy) -EBUSY; clear bit; unlink; filter; if unchanged or no guest: unlock",
             branches=[(busy, "kvm_busy: -EBUSY"), (Not(busy), "clear bit; unlink; filter"),
                       (And(Not(busy), Not(changed)), "shadow unchanged"),
                       (And(Not(busy), changed, Not(guest)), "no guest"),
                       *([(And(Not(busy), Not(need)), "reset the unplugged queues")] if v16 else []),
                       (Not(need), "mutex_unlock(matrix_dev->lock)"),
                       (need, "shadow changed, guest running: commit")])
    reset = None
    if v16:
        reset = (MaskConst(w.nA, [x]), MaskConst(w.nD, list(range(w.nD)))) if kind == "adapter" else \
            (MaskConst(w.nA, list(range(w.nA))), MaskConst(w.nD, [x]))
    k.call("vfio_ap_mdev_commit_apcb", fn=fn, m=m, reset=reset)
    if again:
        k.goto(end)
        _eagain(k, fn, again)


@kernel(OPS, name="assign_adapter_store")
def assign_adapter_v15(k: K, mdev: int, apid: int) -> None:
    """The series' assign_adapter_store."""
    _assign(k, mdev, "adapter", apid)


@kernel(OPS, name="assign_domain_store")
def assign_domain_v15(k: K, mdev: int, apqi: int) -> None:
    """The series' assign_domain_store."""
    _assign(k, mdev, "domain", apqi)


@kernel(OPS, name="unassign_adapter_store")
def unassign_adapter_v15(k: K, mdev: int, apid: int) -> None:
    """v15 unassign_adapter_store (no reset)."""
    _unassign(k, mdev, "adapter", apid, False)


@kernel(OPS, name="unassign_domain_store")
def unassign_domain_v15(k: K, mdev: int, apqi: int) -> None:
    """v15 unassign_domain_store (no reset)."""
    _unassign(k, mdev, "domain", apqi, False)


@kernel(OPS, name="unassign_adapter_store")
def unassign_adapter_v16(k: K, mdev: int, apid: int) -> None:
    """v16 unassign_adapter_store: resets the unplugged queues ("reset queues after adapter/domain unassignment")."""
    _unassign(k, mdev, "adapter", apid, True)


@kernel(OPS, name="unassign_domain_store")
def unassign_domain_v16(k: K, mdev: int, apqi: int) -> None:
    """v16 unassign_domain_store: resets the unplugged queues."""
    _unassign(k, mdev, "domain", apqi, True)


def _queue_update(k: K, fn: str, i: int, j: int, probe: bool, waits_busy: bool) -> None:
    """v15: ``M{ link/unlink; refresh -> kvm_arch_crypto_set_masks (kvm->lock inside, M held); (remove:
    reset q; free q) }``. v16: ``M{ link/unlink; WAIT(kvm_busy); refresh -> commit_apcb (kvm_busy = true,
    drop M, set masks, re-take M, kvm_busy = false); (remove: reset; free q) }``."""
    w = k.w
    own = w.owner_mdev(i, j)
    mk = Select([f.var for f in w.mkvm], own, -1)
    done, wait = k.label("queue_done"), k.label("queue_wait")
    top = w.entry_label(k.t, "queue_lock")
    k.lock(w.M, fn)
    busy = And(own != -1, w.busy(own)) if waits_busy else None
    b = Body()
    b.set(w.drv[i, j], VFIO if probe else NODRV, when=Not(busy) if busy is not None else None)
    b.set(w.vfio_queue[i, j], probe, when=Not(busy) if busy is not None else None)
    need_any = []
    for m in w.mdevs:
        ch, _, _ = refresh(w, b, m, when=_and(own == m, Not(busy) if busy is not None else None), apply=False,
                           reset_filtered=False)
        need_any.append(And(ch, b[w.mkvm[m]] != -1))
    need = Or(*need_any)
    if not probe:
        w.reset_queue(b, i, j, when=Not(need) if busy is None else And(Not(busy), Not(need)))
    if waits_busy:
        w.busy_set(b, k.t, own, True, when=And(Not(busy), need))  # type: ignore[arg-type]
    what = "alloc q; link" if probe else "unlink"
    jumps = ([(busy, wait)] if busy is not None else []) + [(Not(need), done)]
    idle = Not(busy) if busy is not None else None
    k.step(fn, f"{what}; vfio_ap_mdev_refresh_apcb: filter; if unchanged or no guest: "
               + ("done" if probe else "reset q; free q"), body=b, jumps=jumps,
           branches=[*([(busy, "matrix_mdev->kvm_busy: wait_event")] if busy is not None else []),
                     (idle, f"{what}; vfio_ap_mdev_refresh_apcb: filter"),
                     (_and(idle, Not(need)), "shadow unchanged or no guest: "
                      + ("done" if probe else "reset q; free q")),
                     (_and(idle, need), "shadow changed, guest running: update it")])
    sapm = Select([f.var for f in w.sapm], own, MaskConst(w.nA))
    saqm = Select([f.var for f in w.saqm], own, MaskConst(w.nD))
    if waits_busy:
        k.unlock("vfio_ap_mdev_commit_apcb", (w.M, None, None), text="kvm_busy = true; mutex_unlock")
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_commit_apcb", kv=mk, apm=sapm, aqm=saqm, src=own,
           release_m=False)
    if waits_busy:
        k.lock(w.M, "vfio_ap_mdev_commit_apcb")
    b = Body()
    if waits_busy:
        w.busy_set(b, k.t, own, False)
    if not probe:
        w.reset_queue(b, i, j)
    tail = [] if probe else ["vfio_ap_mdev_reset_queue; free q"]
    k.step(fn, "; ".join((["kvm_busy = false; wake_up_all"] if waits_busy else []) + tail)
           or "kvm_arch_crypto_set_masks returned", body=b)
    k.at(done)
    end = k.label("queue_out")
    k.unlock(fn, (w.M, None, None), text="mutex_unlock(matrix_dev->lock)", goto=end)
    k.at(wait)
    k.unlock(fn, (w.M, None, None), text="wait_event(!kvm_busy): mutex_unlock")
    w.wait_flag(k.t, fn, own, when=own != -1)
    k.goto(top)
    k.at(end)
    k.step(fn, "return")


@kernel(OPS, name="vfio_ap_mdev_probe_queue")
def probe_queue_v15(k: K, i: int, j: int) -> None:
    """v15 queue probe: link and update the guest with matrix_dev->lock held."""
    _queue_update(k, "vfio_ap_mdev_probe_queue", i, j, probe=True, waits_busy=False)


@kernel(OPS, name="vfio_ap_mdev_remove_queue")
def remove_queue_v15(k: K, i: int, j: int) -> None:
    """v15 queue remove: unlink, update the guest with matrix_dev->lock held, reset, free."""
    _queue_update(k, "vfio_ap_mdev_remove_queue", i, j, probe=False, waits_busy=False)


@kernel(OPS, name="vfio_ap_mdev_probe_queue")
def probe_queue_v16(k: K, i: int, j: int) -> None:
    """v16 queue probe: waits for kvm_busy, commits with the lock dropped."""
    _queue_update(k, "vfio_ap_mdev_probe_queue", i, j, probe=True, waits_busy=True)


@kernel(OPS, name="vfio_ap_mdev_remove_queue")
def remove_queue_v16(k: K, i: int, j: int) -> None:
    """v16 queue remove: waits for kvm_busy, commits with the lock dropped, resets, frees."""
    _queue_update(k, "vfio_ap_mdev_remove_queue", i, j, probe=False, waits_busy=True)
