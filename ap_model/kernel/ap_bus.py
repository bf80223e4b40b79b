"""AP bus side (drivers/s390/crypto/ap_bus.c, vfio_ap_drv.c, vfio_ap_ops.c queue callbacks), written once:
apmask/aqmask stores with the in_use callback, reprobe, queue probe/remove, manual unbind, host
configuration changes (on_cfg_changed / on_scan_complete), module init.
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import INT, And, Expr, If, MaskConst, Not, Or, lift
from checker.lang.layout import Field
from checker.lang.program import Lock, RwSem

from .. import rules
from ..kfunc import K, kernel
from ..world import CLEAN, HOST, NODRV, VFIO, ZCRYPT, Body, E
from .bodies import unplug_adapter
from .vfio_ap_ops import NO_IN_USE

AP_BUS = "drivers/s390/crypto/ap_bus.c"
OPS = "drivers/s390/crypto/vfio_ap_ops.c"
DRV = "drivers/s390/crypto/vfio_ap_drv.c"
BASE_BUS = "drivers/base/bus.c"


# ---------------------------------------------------------------- apmask / aqmask


def _mask_store(k: K, kind: str, reserve: list[int], release: list[int]) -> None:
    """P { if bits are newly reserved: every driver's in_use (vfio_ap: guests_lock -> mdevs_lock), commit
    or -EBUSY; else commit }; then the reprobe outside P.

    apmask_commit / aqmask_commit test ``bitmap_andnot(reserved, new, ap_perms.Xm)`` (bits, not APQNs)
    and call the in_use callbacks only when it is non-empty: only that path takes vfio_ap's locks and
    reads the mdevs' matrices. ap_perms is stable under ap_perms_mutex, so the test and the commit agree."""
    w = k.w
    fn = f"{kind}mask_store"
    k.lock(w.P, fn)
    mine = w.apmask if kind == "ap" else w.aqmask
    width = w.nA if kind == "ap" else w.nD
    rmask, cmask = MaskConst(width, reserve), MaskConst(width, release)
    newly = rules.newly_reserved(mine.var, mine.var | rmask)
    stored = (mine.var | rmask) & ~cmask
    verify = "__verify_card_reservations" if kind == "ap" else "__verify_queue_reservations"
    commit, after = f"{kind}mask_commit", k.label("revise")
    if reserve:  # a write that sets no bit never reserves one: no test to show
        no_in_use = k.label("commit_without_in_use")
        k.call("vfio_ap_mdev_resource_in_use:lock", fn=commit, verify=verify, cond=newly.nonempty(),
               skip_to=no_in_use)
        apms = [If(w.mdev_alive(m), w.apm[m].var, MaskConst(w.nA)) for m in w.mdevs]
        aqms = [If(w.mdev_alive(m), w.aqm[m].var, MaskConst(w.nD)) for m in w.mdevs]
        busy = rules.in_use(newly, w.aqmask.var, apms, aqms) if kind == "ap" else \
            rules.in_use(w.apmask.var, newly, apms, aqms)
        b = Body()
        new, _err = rules.mask_store(mine.var, stored, busy)
        b.set(mine, new)
        k.ret(b, If(busy, E["EBUSY"], 0))
        k.unlock(commit, *k.call("vfio_ap_mdev_resource_in_use:unlock"), body=b, goto=after,
                 text=f"{verify} -> vfio_ap in_use; commit ap_perms.{kind}m; unlock",
                 branches=[(None, f"{verify} -> vfio_ap in_use"), (busy, "assigned to an mdev: -EBUSY"),
                           (Not(busy), f"commit ap_perms.{kind}m"), (None, "unlock")])
        k.at(no_in_use)
    b = Body()
    b.set(mine, stored)
    k.ret(b, 0)
    # the guard is the test's else branch (always true here: ap_perms_mutex is held since the test), so the
    # step alone never reserves a bit, as the one-step mask proofs check (tests/test_mask_link.py)
    k.step(commit, f"commit ap_perms.{kind}m; mutex_unlock(ap_perms_mutex)", body=b, guard=Not(newly.nonempty()),
           release=[(w.P, None, None)])
    k.at(after)
    ids = sorted(set(reserve) | set(release))
    qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else [(i, j) for i in range(w.nA) for j in ids]
    k.call("ap_bus_revise_bindings", qs=qs)


@kernel(AP_BUS)
def apmask_store(k: K, reserve: list[int], release: list[int]) -> None:
    """Write /sys/bus/ap/apmask."""
    _mask_store(k, "ap", reserve, release)


@kernel(AP_BUS)
def aqmask_store(k: K, reserve: list[int], release: list[int]) -> None:
    """Write /sys/bus/ap/aqmask."""
    _mask_store(k, "aq", reserve, release)


@kernel(OPS, name="vfio_ap_mdev_resource_in_use:lock")
def in_use_lock(k: K, fn: str, verify: str, cond: Expr, skip_to: str) -> None:
    """The commit's test (``cond``: bits newly reserved; else on to ``skip_to``), then
    vfio_ap_mdev_resource_in_use (ap_perms_mutex held by the caller): guests_lock -> mdevs_lock."""
    in_use_test_and_lock(k, fn, verify, cond, skip_to, "w")


def in_use_test_and_lock(k: K, fn: str, verify: str, cond: Expr, skip_to: str, mode: str) -> None:
    """The test folded into the first lock step (guests_lock in ``mode``), then mdevs_lock."""
    call = "down_read" if mode == "r" else "mutex_lock"
    k.lock(k.w.G, fn, when=cond, mode=mode, jumps=[(Not(cond), skip_to)],
           text=f"{verify} -> vfio_ap_mdev_resource_in_use: {call}(matrix_dev->guests_lock)",
           branches=[(cond, "{lock}"), (Not(cond), NO_IN_USE)])
    k.lock(k.w.M, "vfio_ap_mdev_resource_in_use")


@kernel(OPS, name="vfio_ap_mdev_resource_in_use:unlock")
def in_use_unlock(k: K) -> list[tuple[Any, ...]]:
    """The in_use unlocks and the caller's mutex_unlock(ap_perms_mutex), in one step with the commit."""
    return [(k.w.M, None, None), (k.w.G, None, None), (k.w.P, None, None)]


@kernel(AP_BUS)
def ap_bus_revise_bindings(k: K, qs: list[tuple[int, int]]) -> None:
    """__ap_revise_reserved per queue of ``qs``: devres read under ap_perms_mutex, drvres = the bound driver's
    default flag (dev->driver read without the device lock); device_reprobe when they differ.

    device_reprobe detaches the driver bound when it runs and ap_device_probe reads devres again before a
    driver binds. Where a second thread reaches the queue's device (``w.DEV``) both are modelled under the
    device lock; else nothing can rebind the queue or change its devres in between, and the reprobe is the
    bound driver's remove and the other driver's probe."""
    w = k.w
    for n, (i, j) in enumerate(qs):
        locked = (i, j) in w.DEV
        to_zc = k.label("device_reprobe" if locked else "to_zcrypt")
        to_vf = to_zc if locked else k.label("to_vfio_ap")  # one device_reprobe: what it does is read when it runs
        nxt = k.label("reprobe_next") if n + 1 < len(qs) else k.end()
        d = w.drv[i, j].var
        res = w.reserved(None, i, j)
        to_zcrypt, to_vfio_ap = And(d == VFIO, res), And(d == ZCRYPT, Not(res))
        k.lock(w.P, "__ap_revise_reserved")
        k.unlock("__ap_revise_reserved", (w.P, None, None),
                 text=f"devres = {w.apqn(i, j)} in ap_perms.apm x aqm; mutex_unlock(ap_perms_mutex); "
                      "reprobe if devres != driver is default",
                 jumps=[(to_zcrypt, to_zc), (to_vfio_ap, to_vf)], goto=nxt,
                 branches=[(None, f"devres = {w.apqn(i, j)} in ap_perms.apm x aqm; mutex_unlock(ap_perms_mutex)"),
                           (to_zcrypt, "reserved, bound to vfio_ap: device_reprobe"),
                           (to_vfio_ap, "not reserved, bound to zcrypt: device_reprobe"),
                           (d == NODRV, "no driver bound: no reprobe"),
                           (And(d != NODRV, Not(to_zcrypt), Not(to_vfio_ap)), "devres == drvres: no reprobe")])
        if locked:
            k.at(to_zc)
            rescan = k.label("rescan")
            release_driver(k, i, j, "device_driver_detach", "device_reprobe", rescan)
            k.at(rescan)
            attach(k, i, j, "bus_rescan_devices_helper", None, nxt)
        else:
            k.at(to_zc)
            k.call("vfio_ap_mdev_remove_queue", i=i, j=j)
            k.call("zcrypt_queue_probe", i=i, j=j)
            k.goto(nxt)
            k.at(to_vf)
            k.call("zcrypt_queue_remove", i=i, j=j)
            k.call("vfio_ap_mdev_probe_queue", i=i, j=j)
        if n + 1 < len(qs):
            k.at(nxt)


def release_driver(k: K, i: int, j: int, fn: str, why: str, after: str, only_vfio: bool = False,
                   kill: bool = False) -> None:
    """device_release_driver of queue (i, j) (device_driver_detach / device_del): under its device lock when
    the world declares one, the bound driver's remove (``only_vfio``: unbind_store's, vfio_ap's only);
    continue at ``after``. ``kill``: device_unregister's device_del also marks the device dead (kill_device,
    in its own device_lock section just before: one section here, the mark written where it ends), so a
    later device_attach probes nothing."""
    w = k.w
    d = w.drv[i, j].var
    b = Body()
    if kill and (i, j) in w.dev_dead:
        b.set(w.dev_dead[i, j], True)
    zc, done = k.label("zc_remove"), _device_lock_end(k, i, j, after)
    bound = [(d == VFIO, "bound to vfio_ap: its remove")]
    bound += [] if only_vfio else [(d == ZCRYPT, "bound to zcrypt: its remove")]
    unbound = "not bound to vfio_ap: nothing to release" if only_vfio else "no driver bound: nothing to release"
    _device_lock(k, i, j, fn, f"{why}({w.apqn(i, j)})", None,
                 ([] if only_vfio else [(d == ZCRYPT, zc)]) + [(d != VFIO, done)],
                 [*bound, (Not(Or(*[c for c, _ in bound])), unbound)])
    k.call("vfio_ap_mdev_remove_queue", i=i, j=j)
    if not only_vfio:
        k.goto(done)
        k.at(zc)
        k.call("zcrypt_queue_remove", i=i, j=j)
    _device_unlock(k, i, j, fn, done, after, b)


def attach(k: K, i: int, j: int, fn: str, registered: Expr | None, after: str) -> None:
    """device_attach of queue (i, j) (bus_rescan_devices_helper / device_register's bus_probe_device): under
    its device lock when the world declares one, nothing if a driver is bound, else ap_device_probe of each
    driver in turn: devres picks zcrypt or vfio_ap. ``registered``: device_register of a device that exists
    (else none); without it, the reprobe's attach, which probes nothing on a device deleted meanwhile
    (dev->p->dead)."""
    w = k.w
    d = w.drv[i, j].var
    zc, done = k.label("zc_probe"), _device_lock_end(k, i, j, after)
    q = w.apqn(i, j)
    b, dead = Body(), w.dev_dead.get((i, j))
    skip = d != NODRV
    branches: list[tuple[Expr | None, str]] = [(skip, "a driver is bound: nothing to probe")]
    if dead is not None and registered is not None:
        b.set(dead, False)  # a new struct device (set where the section ends, as the kill above)
    elif dead is not None:
        skip = Or(skip, dead.var)
        branches.append((dead.var, "device deleted (dev->p->dead): nothing to probe"))
    _device_lock(k, i, j, fn, f"device_attach({q})" if registered is None else f"device_register({q})", registered,
                 ([] if registered is None else [(Not(registered), after)]) + [(skip, done)], branches)
    k.call("ap_device_probe", i=i, j=j, zc=zc)
    k.call("vfio_ap_mdev_probe_queue", i=i, j=j)
    k.goto(done)
    k.at(zc)
    k.call("zcrypt_queue_probe", i=i, j=j)
    _device_unlock(k, i, j, fn, done, after, b)


def _device_lock_end(k: K, i: int, j: int, after: str) -> str:
    """Where the driver core's section ends: its device_unlock step, or ``after`` without a device lock."""
    return k.label("device_unlock") if (i, j) in k.w.DEV else after


def _device_lock(k: K, i: int, j: int, fn: str, text: str, when: Expr | None, jumps: list[tuple[Expr, str]],
                 branches: list[tuple[Expr | None, str]]) -> None:
    """The driver core's first step on the queue device: device_lock (``when`` the device exists) if the
    world declares the lock, with the read of dev->driver that ``jumps`` on. Without the lock, the plain
    step the model had before (no branches shown)."""
    lk = k.w.DEV.get((i, j))
    if lk is None:
        k.step(fn, text, jumps=jumps)
        return
    text += ": device_lock"
    k.lock(lk, fn, when=when, text=text, jumps=jumps, branches=[(when, text), *branches])


def _device_unlock(k: K, i: int, j: int, fn: str, label: str, after: str, body: Body) -> None:
    """device_unlock at ``label`` (if the world declares the lock), with ``body`` (what the locked section
    wrote of the device: atomic for every other holder of the lock), then continue at ``after``."""
    lk = k.w.DEV.get((i, j))
    if lk is None:
        k.goto(after)
        return
    k.at(label)
    k.unlock(fn, (lk, None, None), text=f"device_unlock({k.w.apqn(i, j)})", goto=after, body=body)


@kernel(AP_BUS)
def ap_device_probe(k: K, i: int, j: int, zc: str) -> None:
    """devres (APQN reserved for the default drivers) read under ap_perms_mutex; a reserved queue goes to
    zcrypt (label ``zc``), else on to vfio_ap's probe."""
    w = k.w
    k.lock(w.P, "ap_device_probe")
    k.unlock("ap_device_probe", (w.P, None, None),
             text=f"devres = {w.apqn(i, j)} in ap_perms.apm x aqm; mutex_unlock(ap_perms_mutex)",
             jumps=[(w.reserved(None, i, j), zc)])


@kernel("drivers/s390/crypto/zcrypt_cex4.c")
def zcrypt_queue_probe(k: K, i: int, j: int) -> None:
    """zcrypt_cex4_queue_probe: bound to zcrypt (host use)."""
    b = Body()
    b.set(k.w.drv[i, j], ZCRYPT)
    d = k.w.qdata[i, j]
    b.set(d, HOST, when=b[d] == CLEAN)
    k.step("ap_device_probe", "zcrypt_cex4_queue_probe: bound to zcrypt (host use)", body=b)


@kernel("drivers/s390/crypto/ap_queue.c")
def zcrypt_queue_remove(k: K, i: int, j: int) -> None:
    """ap_device_remove: zcrypt unbinds; ap_queue_remove issues ap_zapq whatever the configuration (the AP bus
    reads no copy of it here); a ZAPQ on an adapter outside the machine's configuration answers rc 01 and has
    no effect (``reset_queue``)."""
    w = k.w
    b = Body()
    w.reset_queue(b, i, j)
    b.set(w.drv[i, j], NODRV)
    hw = w.hw_configured(i, j)
    gone = f"ap_zapq: adapter {w.cfg.adapters[i]:02x} not in the configuration (rc 01): no effect"
    k.step("ap_queue_remove", "zcrypt unbinds: ap_zapq", body=b,
           branches=[(hw, "zcrypt unbinds: ap_zapq"), (Not(hw), f"zcrypt unbinds: {gone}")])


@kernel(BASE_BUS)
def unbind_store(k: K, apid: int, apqi: int) -> None:
    """echo APQN > /sys/bus/ap/drivers/vfio_ap/unbind: device_release_driver -> vfio_ap_mdev_remove_queue."""
    release_driver(k, apid, apqi, "unbind_store", "device_release_driver", k.end(), only_vfio=True)


# ---------------------------------------------------------------- vfio_ap queue callbacks


def queue_owner(k: K, i: int, j: int) -> tuple[Expr, Expr]:
    """The mdev whose matrix holds the APQN, and its kvm (for get_update_locks_by_apqn / _for_queue): the list
    walk (vfio_ap_mdev_for_queue) reaches the found mdev's kvm pointer, one case per mdev."""
    w = k.w
    own = w.owner_mdev(i, j)
    return own, w.first_mdev(lambda m: w.in_matrix(m, i, j), lambda m: w.mkvm[m].var, lift(-1, INT))


def apqn_locks(k: K, i: int, j: int) -> tuple[Expr, Expr, Field | None]:
    """get_update_locks_by_apqn: the mdev holding the APQN, looked up once under guests_lock and returned,
    is the C local ``matrix_mdev`` vfio_ap_mdev_probe_queue's body and release use. Where guests_lock is
    read-held (v17's rwsem) an assign can change the matrices before the mdevs lock is taken, so the model
    keeps that local (reset at the release); where it is a mutex every matrix writer holds, the lookup
    cannot change and is re-evaluated. Returns (the mdev, its kvm, the local or None). (The remove path,
    get_update_locks_for_queue, follows q->matrix_mdev, re-read at its release: re-evaluated everywhere.)"""
    w = k.w
    own, mk = queue_owner(k, i, j)
    if not isinstance(w.G, RwSem):
        k.call("get_update_locks_for_mdev", fn="get_update_locks_by_apqn", mk=mk)
        return own, mk, None
    local = k.local("matrix_mdev", w.mslots)
    k.call("get_update_locks_for_mdev", fn="get_update_locks_by_apqn", mk=mk, found=(local, own))
    return local.var, w.kvm_of(local.var), local


@kernel(OPS)
def vfio_ap_mdev_remove_queue(k: K, i: int, j: int) -> None:
    """Driver remove (unbind, reprobe, device unregister) under get_update_locks_for_queue: if the queue is
    in the shadow, unplug its APID, update the guest, reset that APID's queues (f009cfa46655); reset the
    queue if still configured (b9bd10c43456); unlink; kfree(q)."""
    w = k.w
    own, mk = queue_owner(k, i, j)
    k.call("get_update_locks_for_mdev", fn="get_update_locks_for_queue", mk=mk)
    b = Body()
    b.through(own, w.mdevs, lambda b, m: k.call("vfio_ap_mdev_remove_queue:unplug", b=b, m=m, i=i,
                                                when=And(b[w.sapm[m]].has(i), b[w.saqm[m]].has(j))))
    configured = w.configured(i, j)
    w.reset_queue(b, i, j, when=configured)
    b.set(w.drv[i, j], NODRV)
    b.set(w.vfio_queue[i, j], False)
    shadow = Or(*[And(own == m, w.sapm[m].var.has(i), w.saqm[m].var.has(j)) for m in w.mdevs])
    hw = w.hw_configured(i, j)
    gone = f"ZAPQ rc 01 (adapter {w.cfg.adapters[i]:02x} not in the configuration): no effect"
    k.unlock("vfio_ap_mdev_remove_queue", *k.call("release_update_locks_for_mdev", mk=mk), body=b,
             text="if in shadow: unplug APID + set masks + reset its queues; reset q (if configured); unlink; kfree(q)",
             branches=[(shadow, "in the guest's shadow: unplug APID; update_guest_apcb; reset_queues_for_apid"),
                       (And(shadow, Not(hw)), gone),
                       (And(Not(shadow), configured), "vfio_ap_mdev_reset_queue"),
                       (And(Not(shadow), configured, Not(hw)), gone),
                       (And(Not(shadow), Not(configured)), "not in matrix_dev->info: no reset"),
                       (None, "unlink; kfree(q); release_update_locks_for_queue")])


@kernel(OPS, name="vfio_ap_mdev_remove_queue:unplug")
def remove_queue_unplug(k: K, b: Body, m: int, i: int, when: Expr) -> None:
    """The queue was in the shadow: clear its APID, update the guest, and reset every queue of that APID
    (f009cfa46655, 2024: before it, only the removed queue was reset)."""
    unplug_adapter(k.w, b, m, i, when=when)


@kernel(OPS)
def vfio_ap_mdev_probe_queue(k: K, i: int, j: int) -> None:
    """get_update_locks_by_apqn; alloc q; link it to the mdev; unless a host-config addition is pending
    (deferred to on_scan_complete, 774d10196e64): filter + update the guest."""
    w = k.w
    own, mk, local = apqn_locks(k, i, j)
    b = Body()
    if local is not None:
        b.set(local, -1)
    b.set(w.drv[i, j], VFIO)
    b.set(w.vfio_queue[i, j], True)
    changed = b.through(own, w.mdevs, lambda b, m: k.call("vfio_ap_mdev_filter_matrix", b=b, m=m,
                                                          when=Not(w.pending[m].var)))
    pending = Or(*[And(own == m, w.pending[m].var) for m in w.mdevs])
    k.unlock("vfio_ap_mdev_probe_queue", *k.call("release_update_locks_for_mdev", mk=mk), body=b,
             text="alloc q; link to mdev; unless a config add is pending: filter + update_guest_apcb; unlock",
             branches=[(own == -1, "alloc q; no mdev has the APQN"), (own != -1, "alloc q; link to matrix_mdev"),
                       (pending, "adapters/domains being added: on_scan_complete filters"),
                       (And(own != -1, Not(pending)), "vfio_ap_mdev_filter_matrix"),
                       (changed, "shadow changed: vfio_ap_mdev_update_guest_apcb"),
                       (And(own != -1, Not(pending), Not(changed)), "shadow unchanged"),
                       (None, "release_update_locks_for_mdev")])


# ---------------------------------------------------------------- host configuration changes
#
# An operation is the host's change of one adapter (SCLP standby / online: it leaves / enters QCI) and the AP
# bus scan that sees it, in one hold of the scan's serialisation (hunk ``ap_scan_bus:serialise``): the scan
# fetches QCI, compares it with the bus's previous copy (``ap_qci_info.apm``) and acts only on a difference.
# Not modelled (docs/designs/6.8.md): two changes seen by one scan, a change during a scan (seen by the next).


@kernel(AP_BUS, name="ap_scan_bus:serialise")
def scan_serialise(k: K) -> tuple[Lock, str, str]:
    """Up to v6.8 ap_scan_bus runs only from the work item ap_scan_work (ap_bus_force_rescan queues it and
    waits with flush_work), and a work item never runs concurrently with itself: one scan at a time, modelled
    as a lock held from the start of the scan to its end. Returns (that lock, the C text of taking it, of
    releasing it)."""
    lk, _ = k.w.ap_scan("ap_scan_work")
    return lk, "process_one_work(ap_scan_work): one scan at a time", "the work item returns"


def _scan_begin(k: K, x: int, online: bool) -> str:
    """ap_scan_bus up to its decision, serialised: ap_get_configuration fetches QCI (adapter ``x`` has just
    entered / left it) and compares it with the bus's copy. Where the bus already saw the adapter so, no
    driver is notified and ap_scan_adapter finds the card device as QCI has it (registered iff in QCI: the
    bus's copy decides both): the scan goes to its end, the label returned."""
    w = k.w
    lk, lock, _ = k.call("ap_scan_bus:serialise")
    assert w.qci_apm is not None and w.hw_apm is not None
    had = w.qci_apm.var.has(x)
    same = had if online else Not(had)
    b = Body()
    b.set(w.qci_apm, w.qci_apm.var.with_bit(x) if online else w.qci_apm.var.without_bit(x))
    # the machine's configuration changed just before this fetch (the change and the fetch are one step here)
    b.set(w.hw_apm, w.hw_apm.var.with_bit(x) if online else w.hw_apm.var.without_bit(x))
    card = f"adapter {w.cfg.adapters[x]:02x}"
    seen = f"{card} {'entered' if online else 'left'} QCI: config changed"
    why = "card and queue devices registered" if online else "not in QCI, no card device"
    done = k.label("scan_done")
    k.lock(lk, "ap_scan_bus", text=lock)
    k.step("ap_scan_bus", f"ap_get_configuration: {seen}, else unchanged", body=b, jumps=[(same, done)],
           branches=[(Not(same), f"ap_get_configuration: {seen}"),
                     (same, f"ap_get_configuration: QCI unchanged; ap_scan_adapter: {card} unchanged ({why}): "
                            "nothing to do")])
    return done


def _scan_end(k: K, done: str) -> None:
    """The end of the scan (label ``done``): the caller's mutex_unlock / the work item's return."""
    lk, _, unlock = k.call("ap_scan_bus:serialise")
    k.at(done)
    k.unlock("ap_scan_bus", (lk, None, None), text=f"scan done; {unlock}")


@kernel(AP_BUS, name="ap_scan_bus:adapter_removed")
def adapter_removed(k: K, apid: int) -> None:
    """The adapter leaves QCI; the AP bus scan sees it: vfio_ap_on_cfg_changed (guests_lock { cfg_remove per
    mdev: kvm->lock -> mdevs_lock, unplug from the shadow and the guest; info = new QCI }), then
    ap_scan_adapter's device_unregister of each of its queues (driver remove)."""
    w, x = k.w, apid
    done = _scan_begin(k, x, online=False)
    k.lock(w.G, "vfio_ap_on_cfg_changed")
    for m in w.mdevs:
        k.call("vfio_ap_mdev_cfg_remove:mdev", m=m, x=x)
    b = Body()
    b.set(w.info_apm, w.info_apm.var.without_bit(x))
    k.unlock("vfio_ap_on_cfg_changed", (w.G, None, None), body=b, text="matrix_dev->info = new QCI; unlock")
    for j in range(w.nD):
        nxt = k.label("next_q") if j + 1 < w.nD else done
        release_driver(k, x, j, "ap_scan_bus", "device_unregister", nxt, kill=True)
        if nxt != done:
            k.at(nxt)
    _scan_end(k, done)


@kernel(OPS, name="vfio_ap_mdev_cfg_remove:mdev")
def cfg_remove_mdev(k: K, m: int, x: int) -> None:
    """One iteration of vfio_ap_mdev_cfg_remove over mdev_list: mutex_lock(&matrix_mdev->kvm->lock);
    mdevs_lock; unplug the removed adapter from the shadow and the guest (no reset: the queues are gone).
    Which mdevs are visited, and whether matrix_mdev->kvm is checked first, is the hunk ``:visit``."""
    w = k.w
    mk = w.mkvm[m].var
    visit, lock_kvm, text, branches = k.call("vfio_ap_mdev_cfg_remove:visit", m=m)
    nxt = k.label("cfg_remove_next")
    b = Body()
    w.use_kvm(b, mk, "matrix_mdev->kvm->lock", when=lock_kvm)
    k.lock(w.KL, "vfio_ap_on_cfg_changed", when=lock_kvm, index=mk, body=b, jumps=[(Not(visit), nxt)],
           text=f"mdev{m}: {text}", branches=[(c, f"mdev{m}: {seg}") for c, seg in branches])
    k.lock(w.M, "vfio_ap_on_cfg_changed")
    b = Body()
    unplug_adapter(w, b, m, x, reset=False)
    k.unlock("vfio_ap_on_cfg_changed", (w.M, None, None), (w.KL, lock_kvm, mk), body=b,
             text=f"vfio_ap_mdev_cfg_remove: unplug adapter {w.cfg.adapters[x]} from mdev{m}; unlock")
    k.at(nxt)


@kernel(OPS, name="vfio_ap_mdev_cfg_remove:visit")
def cfg_remove_visit(k: K, m: int) -> tuple[Expr, Expr, str, list[tuple[Expr | None, str]]]:
    """6.x: every mdev on mdev_list, kvm->lock taken through matrix_mdev->kvm with no NULL check (a NULL
    dereference for an mdev without a guest; kernel-facts §5 C2). Returns (visited, kvm->lock taken, C text,
    the branches a trace shows)."""
    alive = k.w.mdev_alive(m)
    return alive, alive, "mutex_lock(&matrix_mdev->kvm->lock)", [(Not(alive), "not on mdev_list"),
                                                                  (alive, "mutex_lock(&matrix_mdev->kvm->lock)")]


@kernel(AP_BUS, name="ap_scan_bus:adapter_added")
def adapter_added(k: K, apid: int) -> None:
    """The adapter enters QCI; the AP bus scan sees it: vfio_ap_on_cfg_changed (cfg_add records apm_add per
    mdev; info = new QCI), ap_scan_adapter's device_register + probe of its queues, then
    vfio_ap_on_scan_complete."""
    w, x = k.w, apid
    done = _scan_begin(k, x, online=True)
    k.lock(w.G, "vfio_ap_on_cfg_changed")
    b = Body()
    for m in w.mdevs:  # vfio_ap_mdev_cfg_add: apm_add = matrix.apm & added, under guests_lock only
        b.set(w.pending[m], And(w.mdev_alive(m), w.apm[m].var.has(x)))
    b.set(w.info_apm, w.info_apm.var.with_bit(x))
    for j in range(w.nD):  # assumption: a card entering the configuration comes up zeroized
        b.set(w.qdata[x, j], CLEAN)
    k.unlock("vfio_ap_on_cfg_changed", (w.G, None, None), body=b,
             text="vfio_ap_mdev_cfg_add: record apm_add per mdev; matrix_dev->info = new QCI; unlock")
    for j in range(w.nD):
        nxt = k.label("next_q")
        attach(k, x, j, "ap_scan_bus", w.hw_configured(x, j), nxt)  # ap_scan_adapter: the domains QCI has
        k.at(nxt)
    k.call("vfio_ap_on_scan_complete")
    _scan_end(k, done)


@kernel(OPS)
def vfio_ap_on_scan_complete(k: K) -> None:
    """guests_lock { per mdev with a pending apm_add/aqm_add/adm_add (the others are skipped):
    vfio_ap_mdev_hot_plug_cfg = kvm->lock -> mdevs_lock { filter; update the guest }; clear the adds }."""
    w = k.w
    k.lock(w.G, "vfio_ap_on_scan_complete")
    for m in w.mdevs:
        nxt = k.label("scan_complete_next")
        k.call("vfio_ap_mdev_hot_plug_cfg", m=m, skip=nxt)
        k.at(nxt)
    k.unlock("vfio_ap_on_scan_complete", (w.G, None, None))


@kernel(OPS)
def vfio_ap_mdev_hot_plug_cfg(k: K, m: int, skip: str) -> None:
    """The mdev's kvm->lock (hunk ``:lock_kvm``); mdevs_lock { filter matrix and control domains; update the
    guest; reset filtered APIDs }; the caller clears apm_add."""
    w = k.w
    mk = w.mkvm[m].var
    locked = k.call("vfio_ap_mdev_hot_plug_cfg:lock_kvm", m=m, skip=skip)
    k.lock(w.M, "vfio_ap_on_scan_complete")
    b = Body()
    changed = k.call("vfio_ap_mdev_filter_matrix", b=b, m=m)
    b.set(w.pending[m], False)
    k.unlock("vfio_ap_on_scan_complete", (w.M, None, None), (w.KL, locked, mk), body=b,
             text=f"mdev{m}: filter matrix; update_guest_apcb; unlock; clear apm_add",
             branches=[(None, f"mdev{m}: vfio_ap_mdev_filter_matrix"),
                       (changed, "shadow changed: vfio_ap_mdev_update_guest_apcb"),
                       (Not(changed), "shadow unchanged"), (None, "unlock; clear apm_add")])


@kernel(OPS, name="vfio_ap_mdev_hot_plug_cfg:lock_kvm")
def hot_plug_cfg_lock_kvm(k: K, m: int, skip: str) -> Expr:
    """6.x: mutex_lock(&matrix_mdev->kvm->lock) with no NULL check (kernel-facts §5 C2). The caller's
    "nothing added to this mdev: continue" (``skip``) is folded in (guests_lock is held). Returns the
    condition under which kvm->lock is held."""
    w = k.w
    mk = w.mkvm[m].var
    pend = w.pending[m].var
    b = Body()
    w.use_kvm(b, mk, "matrix_mdev->kvm->lock", when=pend)
    k.lock(w.KL, "vfio_ap_on_scan_complete", when=pend, index=mk, body=b, jumps=[(Not(pend), skip)],
           text=f"mdev{m}: nothing added to it: continue; else mutex_lock(&matrix_mdev->kvm->lock)",
           branches=[(Not(pend), f"mdev{m}: nothing added to it: continue"),
                     (pend, f"mdev{m}: mutex_lock(&matrix_mdev->kvm->lock)")])
    return pend


# ---------------------------------------------------------------- module init


@kernel(DRV)
def vfio_ap_init(k: K) -> None:
    """modprobe vfio_ap: without AP instructions -ENODEV and nothing is registered ([S-v10]); else
    vfio_ap_matrix_dev_create, ap_driver_register, vfio_ap_mdev_register (mdev parent). No PQAP hook is
    registered at load (per-KVM hook, set in set_kvm)."""
    w = k.w
    b = Body()
    if not w.cfg.ap_instructions:
        k.ret(b, "ENODEV")
        k.step("vfio_ap_init", "!ap_instructions_available(): -ENODEV (nothing registered)", body=b)
        return
    b.set(w.loaded, True)
    k.ret(b, 0)
    k.step("vfio_ap_init", "vfio_ap_matrix_dev_create; ap_driver_register; vfio_ap_mdev_register (mdev parent)",
           body=b)
