"""The named properties of the vfio_ap model, each with a one-line statement and its source.

Safety (``always``): no-host-guest-sharing, no-two-guests, no-double-assignment,
crycb-within-bounds (dynamic eras), reset-before-owner-change, hook-safe,
one-mdev-per-kvm (v17 adds one-hook-registrant). Witnesses (``sometimes``) are
added only for what the scenario runs, so a NOT_WITNESSED verdict always means
the scenario failed to exercise something it contains.

Lemmas (``lemma-*``, final design only, ``add_lemmas``): auxiliary ``always``
invariants true in every reachable state, given to ``apcheck prove`` (a
spec's ``prove: lemmas:``) to make the sharing and filtering invariants
inductive. See docs/prove.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checker.lang.expr import INT, And, Bin, Const, Expr, If, Implies, Ite, MaskConst, Not, Or, Select, Var
from checker.lang.layout import THREAD_LOCAL, Field
from checker.lang.program import FREED, UNBORN, Action, Lock, Program, RwSem

from . import rules
from .universal import SCENARIO_NAME as UNIVERSAL
from .world import CLEAN, HOST, NODRV, VFIO, ZCRYPT, E

if TYPE_CHECKING:
    from .world import World


def add_properties(w: World) -> None:
    pb = w.pb
    host = []
    for v in w.vms:
        for i, j in w.queues:
            host.append(Not(And(w.in_crycb(v, i, j),
                                Or(w.drv[i, j].var == ZCRYPT, w.reserved(None, i, j)))))
    pb.always("no-host-guest-sharing", And(*host),
              "no APQN is in a guest's CRYCB while bound to zcrypt or reserved for the default drivers",
              "ap_bus.c ap_owned_by_def_drv / apmask_store + in_use; vfio-ap cover letter v16 item 2")
    two = []
    for a in w.vms:
        for b2 in w.vms:
            if a < b2:
                for i, j in w.queues:
                    two.append(Not(And(w.in_crycb(a, i, j), w.in_crycb(b2, i, j))))
    pb.always("no-two-guests", And(*two), "no APQN is in two guests' CRYCBs at once",
              "vfio_ap_mdev_verify_no_sharing + kvm_arch_crypto_set_masks")
    dbl = []
    for m1 in w.mdevs:
        for m2 in w.mdevs:
            if m1 < m2:
                dbl.append(Not(And(w.mdev_alive(m1), w.mdev_alive(m2),
                                   rules.sharing_conflict(w.apm[m1].var, w.aqm[m1].var,
                                                          w.apm[m2].var, w.aqm[m2].var))))
    pb.always("no-double-assignment", And(*dbl), "no APQN is assigned to two matrix_mdevs",
              "vfio_ap_mdev_verify_no_sharing (assign_adapter_store / assign_domain_store)")
    if w.era.dynamic:
        inb = []
        for v in w.vms:
            s = w.csrc[v].var
            for i, j in w.queues:
                ok = And(s != -1, Select([w.apm[m].var for m in w.mdevs], s, MaskConst(w.nA)).has(i),
                         Select([w.aqm[m].var for m in w.mdevs], s, MaskConst(w.nD)).has(j),
                         w.info_apm.var.has(i), w.info_aqm.var.has(j), w.bound(i, j))
                inb.append(Implies(w.in_crycb(v, i, j), ok))
        quiet = And(w.M.owner.var == 0, *[fl.holder.var == 0 for fl in w.BUSY])
        pb.always("crycb-within-bounds", Implies(quiet, And(*inb)),
                  "whenever no vfio_ap update is in progress (matrix lock free, no kvm_busy), a guest's CRYCB "
                  "is within its mdev's assigned matrix ∩ host configuration ∩ queues bound to vfio_ap",
                  "vfio_ap_mdev_filter_matrix / vfio_ap_mdev_update_guest_apcb (kernel-facts §1.6)")
    rst = []
    for i, j in w.queues:
        # a queue outside the machine's configuration gives no one its contents (every AP instruction on it
        # answers rc 01) and comes back zeroized: its stale data reaches no new owner
        d, hw = w.qdata[i, j].var, w.hw_configured(i, j)
        for v in w.vms:
            rst.append(Implies(And(w.in_crycb(v, i, j), hw), Or(d == CLEAN, d == 2 + v)))
        rst.append(Implies(And(w.drv[i, j].var == ZCRYPT, hw), Or(d == CLEAN, d == HOST)))
    pb.always("reset-before-owner-change", And(*rst),
              "a queue in the machine's AP configuration reaches a guest or zcrypt only after a reset (ZAPQ) "
              "cleared its previous owner's data",
              "vfio_ap_mdev_reset_queue call sites; 'reset queues after adapter/domain unassignment' (v16); "
              "ZAPQ rc 01 outside the configuration, the card zeroized when it returns")
    pb.always("hook-safe", Not(w.hook_unsafe.var),
              "the PQAP hook (or kvm->arch.crypto.data) never leads a vCPU to a freed mdev or another/freed KVM",
              "priv.c handle_pqap -> vfio_ap handle_pqap (container_of(hook) / crypto.data)")
    one = []
    for m1 in w.mdevs:
        for m2 in w.mdevs:
            if m1 < m2:
                k1, k2 = w.mkvm[m1].var, w.mkvm[m2].var
                one.append(Not(And(k1 != -1, k2 != -1, k1 == k2)))  # symmetric in m1, m2 (symmetry reduction)
    pb.always("one-mdev-per-kvm", And(*one), "at most one matrix_mdev is attached to a KVM",
              "vfio_ap_mdev_set_kvm (-EPERM when another mdev has this kvm)")
    # witnesses: only for what the scenario runs
    used = w.ops_used
    if used & {"assign_adapter", "unassign_adapter", "assign_domain", "unassign_domain", "adapter_standby",
               "adapter_online", "unbind_queue", "apmask_store", "aqmask_store"}:
        changed = [And(w.kvm_alive(v), Or(w.capm[v].var != w.capm[v].init,
                                             w.caqm[v].var != w.caqm[v].init)) for v in w.vms]
        pb.sometimes("guest-apcb-changed", Or(*changed),
                     "a running guest's CRYCB changes (hot plug / unplug reached the guest)",
                     "kvm_arch_crypto_set_masks from a hot-plug path")
    if used & {"apmask_store", "aqmask_store"}:
        moved = [w.drv[q].var == ZCRYPT for q in w.queues if w.drv[q].init != ZCRYPT]
        if moved:
            pb.sometimes("queue-to-zcrypt", Or(*moved), "a queue that was not zcrypt's gets bound to zcrypt",
                         "ap_bus_revise_bindings -> device_reprobe")
    if used & {"adapter_standby"}:
        pb.sometimes("config-removed-under-guest",
                     And(w.info_apm.var != w.info_apm.init, Or(*[f.var != -1 for f in w.mkvm])),
                     "an adapter left the host configuration while a guest has an mdev",
                     "vfio_ap_on_cfg_changed")
    pq = [f.var for _, f in w.in_pqap.values()]
    if pq and "close_device" in w.ops_used:
        closing = Or(*[x.var for x in w.closing])
        pb.sometimes("pqap-during-close", And(Or(*pq), closing),
                     "a PQAP(AQIC) intercept is in handle_pqap while an mdev is being closed",
                     "priv.c handle_pqap vs vfio_ap_mdev_close_device")
    if pq and "set_apie" in used:
        off_in = [And(f.var, Not(And(*[e.var for e in w.eca_apie[v]]))) for v, f in w.in_pqap.values()]
        pb.sometimes("apie-off-during-pqap", Or(*off_in),
                     "APIE is switched off while a vCPU of that VM is inside handle_pqap (past the ECA_APIE check)",
                     "kvm_s390_vm_set_crypto(DISABLE_APIE) -> kvm_s390_vcpu_crypto_reset_all vs priv.c handle_pqap")
        rets = [w.errno[n].var == E["EOPNOTSUPP"] for n in w.in_pqap if n in w.errno]
        if rets:
            pb.sometimes("pqap-eopnotsupp", Or(*rets),
                         "a PQAP(AQIC) intercept returned -EOPNOTSUPP to QEMU because ECA_APIE was off",
                         "priv.c handle_pqap: !(sie_block->eca & ECA_APIE)")
    if pq:
        pairs = []
        items = list(w.in_pqap.values())
        for x in range(len(items)):
            for y in range(x + 1, len(items)):
                if items[x][0] != items[y][0]:
                    pairs.append(And(items[x][1].var, items[y][1].var))
        if pairs:
            pb.sometimes("two-vms-in-pqap", Or(*pairs),
                         "vCPUs of two different VMs are inside handle_pqap at the same time",
                         "priv.c handle_pqap (per-KVM rwsem vs global pqap_hook_lock)")



# ---------------------------------------------------------------- lemmas (final design)

LEMMAS = ("lemma-mdev-state", "lemma-hook-target", "lemma-guest-is-shadow", "lemma-shadow-within-bounds",
          "lemma-assigned-not-reserved", "lemma-binding-steps", "lemma-cfg-remove-unplugged",
          "lemma-cfg-add-configured", "lemma-queue-data", "lemma-frame")
PARAMETRIC_LEMMAS = ("lemma-close-local-kvm", "lemma-kvm-refs", "lemma-mdev-removed", "lemma-dead-device",
                     "lemma-vm-ioctl-fd", "lemma-store-active")
FD_RELEASES = ("kvm_vm_release", "kvm_vcpu_release")  # close(vm fd), close(vcpu fd): each drops the fd's reference


def has_lemmas(w: World) -> bool:
    """The lemmas are stated for the final design (its guests_lock, shadow APCB and atomic updates)."""
    return w.era.dynamic and w.era.guests_lock == "mutex"


def _add(program: Program, name: str, expr: Expr, description: str, source: str) -> None:
    program.add_property(name, "always", expr, description, source)


def _at(program: Program, a: Action | tuple[int, list[int]]) -> Expr:
    """The thread of ``a`` is at its step (or at one of the given pcs)."""
    if isinstance(a, Action):
        return program.threads[a.thread].pc.var == a.label
    t, pcs = a
    pc = program.threads[t].pc.var
    return Or(*[pc == p for p in pcs])


def _dev_held(w: World, i: int, j: int, a: Action) -> list[Expr]:
    """Where the queue device's lock is modelled, the driver core holds it around every bind and unbind."""
    from checker.prove.derived import held_expr

    lk = w.DEV.get((i, j))
    held = None if lk is None else held_expr(lk, "w", a.thread)
    return [] if held is None else [held]


def _lock_steps_before(program: Program, a: Action) -> list[int]:
    """The pcs of the lock-only steps (they take or drop locks and write nothing else) right before ``a``'s
    step (e.g. ap_device_probe's ap_perms_mutex section and the update locks before a queue probe)."""
    owners = {f for lk in program.locks for f in _lock_fields(lk)}
    pcs: list[int] = []
    p = a.label - 1
    while p >= 0:
        acts = program.by_label[a.thread][p]
        if any(acq.lock.cls == "dev->mutex" for x in acts for acq in x.acquires):
            break  # from the device lock on, no other thread binds or unbinds the queue (ap_bus.py)
        if not all((x.acquires or x.releases) and set(x.updates) <= owners | {program.threads[a.thread].pc}
                   for x in acts):
            break
        pcs.insert(0, p)
        p -= 1
    return pcs


def _lock_fields(lk: object) -> list[Field]:
    if isinstance(lk, RwSem):
        return [lk.writer, *lk.readers.values(), *lk.queued.values()]
    assert isinstance(lk, Lock)
    return [lk.owner]


def add_lemmas(w: World, program: Program) -> None:
    """Auxiliary invariants of the final design, for ``apcheck prove``.

    Each holds in every reachable state (``apcheck check`` reports HOLDS on every
    final spec) and is stated over shared state and lock owners; three of them
    (binding-steps, cfg-remove-unplugged, cfg-add-configured) are program-point
    annotations (Owicki-Gries style: "when thread T is at step S, P holds") for
    the steps that change a queue's binding or the host configuration outside
    one vfio_ap critical section. Appended to the built program (a thread's pc
    exists only then); the steps are found by what they write.
    """
    zA, zQ = MaskConst(w.nA), MaskConst(w.nD)
    st = []
    for m in w.mdevs:
        st.append(Implies(w.mkvm[m].var != -1, And(w.mdev_alive(m), w.vopen[m].var != 0)))
        st.append(Implies(w.mdev.state[m].var == FREED, And(w.apm[m].var == zA, w.aqm[m].var == zQ,
                                                            w.sapm[m].var == zA, w.saqm[m].var == zQ)))
        if m in w.cfg.created:
            st.append(w.mdev.state[m].var != UNBORN)
        if not any(w.mdev.state[m] in a.updates for a in program.actions):  # no step creates or frees it
            st.append(w.mdev.state[m].var == w.mdev.state[m].init)
    _add(program, "lemma-mdev-state", And(*st),
         "an mdev attached to a KVM is alive and its vfio device open; a freed mdev has an empty matrix and "
         "shadow APCB; an mdev created at start is never unborn again",
         "vfio_ap_mdev_set_kvm / vfio_ap_mdev_remove (waits for close, clears the matrix)")
    gs = []
    for v in w.vms:
        src = w.csrc[v].var
        gs.append(Implies(src == -1, And(w.capm[v].var == zA, w.caqm[v].var == zQ)))
        for m in w.mdevs:
            gs.append(Implies(src == m, And(w.mkvm[m].var == v, w.capm[v].var == w.sapm[m].var,
                                            w.caqm[v].var == w.saqm[m].var)))
            gs.append(Implies(w.mkvm[m].var == v, src == m))
    hk = []
    for v in w.vms:
        for m in w.mdevs:
            # not "the hook names a live mdev": after an open_device that fails with -EPERM (another mdev has
            # this KVM) the hook keeps naming the failed mdev, which may then be removed (final-hooks)
            hk.append(Implies(w.hook[v].var == m, Or(w.mkvm[m].var == -1, w.mkvm[m].var == v)))
            hk.append(Implies(w.mkvm[m].var == v, w.kvm_alive(v)))
    _add(program, "lemma-hook-target", And(*hk),
         "a KVM's PQAP hook names no mdev attached to another KVM; the KVM an mdev is attached to is alive",
         "vfio_ap_mdev_set_kvm / vfio_ap_mdev_unset_kvm (hook set before, cleared before the kvm is released)")
    _add(program, "lemma-guest-is-shadow", And(*gs),
         "a guest's CRYCB is empty or equals the shadow APCB of the mdev attached to it, and an attached mdev's "
         "shadow is what its guest sees (final: every shadow change and its CRYCB write are one critical "
         "section under guests_lock, kvm->lock and mdevs_lock)",
         "vfio_ap_mdev_update_guest_apcb / kvm_arch_crypto_set_masks (kernel-facts §1.6)")
    sb = []
    for m in w.mdevs:
        sb.append(rules.subset(w.sapm[m].var, w.apm[m].var & w.info_apm.var))
        sb.append(rules.subset(w.saqm[m].var, w.aqm[m].var & w.info_aqm.var))
        for i, j in w.queues:
            sb.append(Implies(And(w.sapm[m].var.has(i), w.saqm[m].var.has(j)), w.bound(i, j)))
    _add(program, "lemma-shadow-within-bounds", And(*sb),
         "an mdev's shadow APCB is within its assigned matrix and the host configuration, and every APQN in it "
         "is bound to vfio_ap",
         "vfio_ap_mdev_filter_matrix; unplug on unassign, queue remove and configuration removal (§1.6)")
    nr = []
    for m in w.mdevs:
        for i, j in w.queues:
            nr.append(Implies(w.in_matrix(m, i, j), Not(w.reserved(None, i, j))))
    _add(program, "lemma-assigned-not-reserved", And(*nr),
         "no APQN assigned to a live mdev is reserved for the default drivers (apmask AND aqmask)",
         "assign_*_store -> vfio_ap_mdev_validate_masks (EADDRNOTAVAIL); apmask/aqmask_store -> in_use (EBUSY)")
    # program points: zcrypt binds or unbinds a queue (no vfio_ap lock held); vfio_ap binds one
    zs: list[Expr] = []
    seen: set[tuple[int, int]] = set()
    for a in program.actions:
        if (a.thread, a.label) in seen:
            continue
        for (i, j), f in w.drv.items():
            e = a.updates.get(f)
            if isinstance(e, Const) and e.value == VFIO:  # vfio_ap_mdev_probe_queue, from its first lock on
                seen.add((a.thread, a.label))
                pcs = _lock_steps_before(program, a) + [a.label]
                # host data stays in a queue whose adapter left the machine's configuration (ZAPQ: rc 01)
                clean = Or(w.qdata[i, j].var != HOST, Not(_configured(w, i, j)))
                zs.append(Implies(_at(program, (a.thread, pcs)),
                                  And(w.drv[i, j].var == NODRV, clean, *_dev_held(w, i, j, a))))
                continue
            if any(g in a.updates for g in w.sapm):
                continue
            if isinstance(e, Const) and e.value in (ZCRYPT, NODRV):
                seen.add((a.thread, a.label))
                d = w.qdata[i, j].var
                ok = w.drv[i, j].var != VFIO
                if e.value == ZCRYPT:  # the queue was reset (or is the host's) before zcrypt gets it
                    ok = And(ok, Or(d == CLEAN, d == HOST, Not(_configured(w, i, j))))
                zs.append(Implies(_at(program, a), And(ok, *_dev_held(w, i, j, a))))
    # vfio_ap's record of a queue (its vfio_ap_queue) and the driver core's dev->driver are written in one step
    zs += [w.vfio_queue[q].var == (w.drv[q].var == VFIO) for q in w.queues]
    _add(program, "lemma-binding-steps", And(*zs),
         "a thread about to bind a queue to zcrypt (ap_device_probe) or to unbind it from zcrypt "
         "(ap_queue_remove) finds it not bound to vfio_ap (and, binding, with no guest's data if configured); one "
         "about to bind it to vfio_ap finds it unbound and, if configured, without host data; vfio_ap has a queue "
         "object (vfio_ap_queue) for an APQN exactly when the queue is bound to vfio_ap",
         "ap_bus_revise_bindings / ap_scan_bus: vfio_ap_mdev_remove_queue ran first, or the queue is zcrypt's")
    # program points: vfio_ap_on_cfg_changed (adapter leaves the configuration) holds guests_lock from the
    # unplug of adapter x from each mdev's shadow until matrix_dev->info drops x
    cr: list[Expr] = []
    removing: dict[int, list[Expr]] = {}  # adapter -> "a thread is between its first unplug and the info update"
    G = w.G
    assert isinstance(G, Lock)  # final: guests_lock is a mutex
    for a in program.actions:
        e = a.updates.get(w.info_apm)
        if not (isinstance(e, Bin) and e.op == "clrbit" and isinstance(e.a, Var) and e.a.field is w.info_apm
                and isinstance(e.b, Const)):
            continue
        x = int(e.b.value)
        earlier = [c.label for c in program.actions
                   if c.thread == a.thread and c.label < a.label and w.info_apm in c.updates]
        lo = max(earlier, default=-1)
        unplugs = [u for u in program.actions if u.thread == a.thread and lo < u.label < a.label
                   and u.function == a.function and any(w.sapm[m] in u.updates for m in w.mdevs)]
        if not unplugs:
            continue
        first = min(u.label for u in unplugs)
        removing.setdefault(x, []).append(_at(program, (a.thread, list(range(first + 1, a.label + 1)))))
        takes = [c.label for c in program.actions if c.thread == a.thread and lo < c.label < first
                 and any(q.lock is G for q in c.acquires)]
        if takes:  # guests_lock is held from the step after mutex_lock(guests_lock) to the update of info
            cr.append(Implies(_at(program, (a.thread, list(range(max(takes) + 1, a.label + 1)))),
                              G.owner.var == a.thread + 1))
        for u in unplugs:
            for m in w.mdevs:
                if w.sapm[m] in u.updates:
                    pcs = list(range(u.label + 1, a.label + 1))
                    cr.append(Implies(_at(program, (a.thread, pcs)), Not(w.sapm[m].var.has(x))))
    _add(program, "lemma-cfg-remove-unplugged", And(*cr),
         "while vfio_ap_on_cfg_changed removes an adapter from the configuration, it holds guests_lock from "
         "the unplug of the adapter from an mdev's shadow until matrix_dev->info drops it, and that shadow "
         "stays without the adapter",
         "vfio_ap_on_cfg_changed -> vfio_ap_mdev_cfg_remove (kernel-facts §1.7)")
    # program points: an AP bus scan holds its serialisation from the step after taking it to the step releasing
    # it; after vfio_ap_on_cfg_changed adds an adapter to matrix_dev->info, it stays there until the scan ends
    # (only a scan writes it, one at a time: ap_model/kernel/ap_bus.py)
    ca: list[Expr] = []
    leaving: dict[int, list[Expr]] = {}
    if w.SB is not None:
        ca += _scan_view(w, program, leaving)
    for a in program.actions:
        e = a.updates.get(w.info_apm)
        if not (isinstance(e, Bin) and e.op == "setbit" and isinstance(e.a, Var) and e.a.field is w.info_apm
                and isinstance(e.b, Const)):
            continue
        end = min(c.label for c in program.actions if c.thread == a.thread and c.label > a.label
                  and any(lk is w.SB for lk, _ in c.releases))
        ca.append(Implies(_at(program, (a.thread, list(range(a.label + 1, end + 1)))),
                          w.info_apm.var.has(int(e.b.value))))
    _add(program, "lemma-cfg-add-configured", And(*ca),
         "an AP bus scan holds its serialisation from its start to its end; the bus's copy of QCI and "
         "matrix_dev->info agree except in the adapter a scan is changing, from its fetch of QCI to "
         "vfio_ap_on_cfg_changed; once that has added the adapter to matrix_dev->info, it stays configured until "
         "the scan ends (only a scan writes either copy, one scan at a time); the machine's configuration is the "
         "bus's copy, and an adapter out of it has no queue bound to a driver but while the scan that saw it "
         "leave unregisters them",
         "ap_scan_bus (ap_scan_bus_mutex / the ap_scan_work item) -> vfio_ap_on_cfg_changed, "
         "vfio_ap_on_scan_complete (kernel-facts §1.7)")
    # queue data (reset-before-owner-change). A ZAPQ clears a queue in the machine's configuration only (outside
    # it: rc 01, the contents out of reach until the card returns zeroized); "configured" (``_configured``) is
    # in the machine's configuration, which changes at a scan's fetch of QCI, and in matrix_dev->info, which
    # changes at vfio_ap_on_cfg_changed with the zeroizing of a returning card. A configured queue bound to
    # vfio_ap, or unbound, holds no host data (a queue that is not: the reprobe's zcrypt remove reset nothing
    # after the adapter left the machine's configuration, then bound it to vfio_ap); a queue holds a guest's
    # data only while in that guest's CRYCB, not configured, or while vfio_ap_on_cfg_changed unplugs its
    # adapter (no reset there: the adapter is leaving the configuration)
    qd = []
    for i, j in w.queues:
        d, drv = w.qdata[i, j].var, w.drv[i, j].var
        incfg = _configured(w, i, j)
        qd.append(Implies(drv == VFIO, Or(d != HOST, Not(incfg))))
        qd.append(Implies(And(drv == NODRV, incfg), d != HOST))
        for v in w.vms:
            qd.append(Implies(d == 2 + v, Or(w.in_crycb(v, i, j), Not(incfg), *removing.get(i, []))))
    _add(program, "lemma-queue-data", And(*qd),
         "a configured queue (in the machine's AP configuration and matrix_dev->info) bound to vfio_ap or unbound "
         "holds no host data; a queue holds a guest's data only while in that guest's CRYCB, not configured, or "
         "while vfio_ap_on_cfg_changed unplugs its adapter",
         "vfio_ap_mdev_reset_queue(s) on unplug, unassign, close, remove; zcrypt ap_zapq on unbind; ZAPQ rc 01 "
         "outside the configuration")
    if program.name.endswith(":" + UNIVERSAL):
        _add_parametric_lemmas(w, program)
        _add_removed_lemma(w, program)
        if w.SB is not None:
            from .device_lemmas import add_dead_device_lemma

            add_dead_device_lemma(w, program, leaving)
        from .lifetime_lemmas import add_lifetime_lemmas

        add_lifetime_lemmas(w, program)
    _add_frame(program)


def _configured(w: World, i: int, j: int) -> Expr:
    """APQN (i, j) is in the machine's AP configuration and in vfio_ap's copy of it (matrix_dev->info): a queue
    whose stale data a ZAPQ clears, or that the machine zeroized when it returned (at vfio_ap_on_cfg_changed
    in the model)."""
    return And(w.info_apm.var.has(i), w.info_aqm.var.has(j), w.hw_configured(i, j))


def _scan_view(w: World, program: Program, leaving: dict[int, list[Expr]]) -> list[Expr]:
    """Program points of the AP bus scans (ap_model/kernel/ap_bus.py): a scan holds its serialisation from the
    step after taking it to the step releasing it; from its fetch of QCI (the step writing the bus's copy,
    ``ap_qci_info.apm``) to its end the copy has the adapter as the scan left it; from that fetch to
    vfio_ap_on_cfg_changed's update of matrix_dev->info, vfio_ap's copy differs from the bus's in that adapter
    only; at any other time the two agree. The machine's configuration (``ghost.hw_config.apm``) is the bus's
    copy; an adapter out of it has no bound queue but while the scan that saw it leave is past its fetch
    (``leaving``, filled: adapter -> "a scan that saw it leave QCI is past its fetch")."""
    sb, qci = w.SB, w.qci_apm
    assert sb is not None and qci is not None
    out: list[Expr] = []
    between: list[Expr] = []  # "a scan is between its fetch of QCI and its update of matrix_dev->info"
    for a in program.actions:
        if not any(q.lock is sb for q in a.acquires):
            continue
        later = sorted((c for c in program.actions if c.thread == a.thread and c.label > a.label),
                       key=lambda c: c.label)
        end = next(c.label for c in later if any(lk is sb for lk, _ in c.releases))
        out.append(Implies(_at(program, (a.thread, list(range(a.label + 1, end + 1)))), sb.owner.var == a.thread + 1))
        fetch = next(c for c in later if qci in c.updates)
        e = fetch.updates[qci]
        assert isinstance(e, Bin) and e.op in ("setbit", "clrbit") and isinstance(e.b, Const)
        x, online = int(e.b.value), e.op == "setbit"
        out.append(Implies(_at(program, (a.thread, list(range(fetch.label + 1, end + 1)))),
                           qci.var.has(x) if online else Not(qci.var.has(x))))
        if not online:
            leaving.setdefault(x, []).append(_at(program, (a.thread, list(range(fetch.label + 1, end + 1)))))
            for j in range(w.nD):  # from its last unbind of a queue of the adapter (device_unregister) on
                last = max((c.label for c in later if c.label < end and w.drv[x, j] in c.updates), default=None)
                if last is not None:
                    out.append(Implies(_at(program, (a.thread, list(range(last + 1, end + 1)))),
                                       w.drv[x, j].var == NODRV))
        info = next((c.label for c in later if c.label > fetch.label and w.info_apm in c.updates), None)
        if info is None:
            continue
        pcs = (a.thread, list(range(fetch.label + 1, info + 1)))
        out.append(Implies(_at(program, pcs), And(
            Not(w.info_apm.var.has(x)) if online else w.info_apm.var.has(x),
            qci.var == (w.info_apm.var.with_bit(x) if online else w.info_apm.var.without_bit(x)))))
        between.append(_at(program, pcs))
    out.append(Or(qci.var == w.info_apm.var, *between))
    assert w.hw_apm is not None  # declared with the bus's copy, written in the same fetch
    out.append(w.hw_apm.var == qci.var)
    # no queue of an adapter out of the machine's configuration is bound to a driver, except while the scan
    # that saw the adapter leave unregisters its queue devices (a device deleted is probed no more)
    out += [Or(w.hw_configured(i, j), w.drv[i, j].var == NODRV, *leaving.get(i, [])) for i, j in w.queues]
    return out


def _add_parametric_lemmas(w: World, program: Program) -> None:
    """Lemmas ``apcheck prove --parametric`` needs with ``close_device`` among the operations (PARAMETRIC_LEMMAS).

    Stated for the universal scenario only: as properties of every final spec they would make more steps
    visible to partial-order reduction (+26 % reduced states on final-hooks). Both HOLD in the explicit
    search of every final spec (checked when they were written: ``golden update`` with them everywhere)."""
    from .lifetime_lemmas import jumps_on_null

    # program points: vfio_device_close reads matrix_mdev->kvm into a local under the mdev's group_lock, which
    # it holds until vfio_ap_mdev_unset_kvm clears matrix_mdev->kvm: until then the local is matrix_mdev->kvm
    lk: list[Expr] = []
    for a in program.actions:
        for f, e in a.updates.items():
            if not (f.meta.get(THREAD_LOCAL) and isinstance(e, Var) and e.field in w.mkvm):
                continue
            m = w.mkvm.index(e.field)
            later = [c.label for c in program.actions
                     if c.thread == a.thread and c.label > a.label and w.mkvm[m] in c.updates]
            if later:
                held = [w.VG[m].owner.var == a.thread + 1] if w.VG else []  # the group_lock, all along
                cleared = min(later)
                span = list(range(a.label + 1, cleared + 1))
                set_ = [f.var != -1] if jumps_on_null(a.target, w.mkvm[m], span) else []
                lk.append(Implies(_at(program, (a.thread, span)), And(f.var == w.mkvm[m].var, *held, *set_)))
                # from there to the step that drops the local (vfio core's kvm_put_kvm): no guest any more
                drop = [c.label for c in program.actions
                        if c.thread == a.thread and c.label > cleared and f in c.updates]
                if drop:
                    lk.append(Implies(_at(program, (a.thread, list(range(cleared + 1, min(drop) + 1)))),
                                      And(w.mkvm[m].var == -1, *held)))
    # program points: the first open of an mdev's vfio device (the step that counts its fd up to 1 calls
    # open_device) holds the group_lock and finds matrix_mdev->kvm NULL until vfio_ap_mdev_set_kvm attaches it
    # (close_device, which clears it, runs for the last fd under that lock; a failed open attached nothing)
    for a in program.actions:
        counted = [m for m in w.mdevs if w.vopen[m] in a.updates and a.function != "vfio_ap_mdev_set_kvm"]
        if len(counted) != 1 or any(w.vopen[counted[0]] in c.updates for c in program.actions
                                    if c.thread == a.thread and c.label < a.label):
            continue
        m = counted[0]
        attach = min((c for c in program.actions
                      if c.thread == a.thread and c.label > a.label and w.mkvm[m] in c.updates),
                     key=lambda c: (c.label, c.aid), default=None)
        if attach is not None:
            held = [w.VG[m].owner.var == a.thread + 1] if w.VG else []
            # its fd is counted (no remove got past its wait) and, 6.2+, the vfio core holds its kvm reference
            vms = [v for v in w.vms if w.kvm.refs is not None and w.kvm.refs[v] in attach.updates]
            core = [w.vkvm[m].var == vms[0]] if w.vkvm and len(vms) == 1 else []
            lk.append(Implies(_at(program, (a.thread, list(range(a.label + 1, attach.label + 1)))),
                              And(w.mkvm[m].var == -1, w.vopen[m].var >= 1, w.mdev_alive(m), *held, *core)))
    # reference counts: a struct kvm holds at least the references of the mdevs attached to it (vfio_ap's) and of
    # the vfio devices open on it (the vfio core's, 6.2+)
    rf = []
    if w.kvm.refs is not None:
        for v in w.vms:
            held_refs: Expr = Const(0, INT)
            for m in w.mdevs:
                held_refs = held_refs + If(w.mkvm[m].var == v, 1, 0)
                if w.vkvm:
                    held_refs = held_refs + If(w.vkvm[m].var == v, 1, 0)
            for a in program.actions:  # the VM and vCPU fds, until their close's kvm_put_kvm
                if a.function in FD_RELEASES and w.kvm.refs[v] in a.updates:
                    held_refs = held_refs + If(program.threads[a.thread].pc.var <= a.label, 1, 0)
            rf.append(w.kvm.refs[v].var >= held_refs)
            rf.append(Implies(w.kvm.refs[v].var > 0, w.kvm_alive(v)))  # kvm_destroy_vm only on the last put
    _add(program, "lemma-kvm-refs", And(*rf),
         "a struct kvm holds a reference for each mdev attached to it, each vfio device open on it, and its VM and "
         "vCPU fds until they are closed; a struct kvm with a reference is alive",
         "vfio_ap_mdev_set_kvm / unset_kvm (kvm_get_kvm / kvm_put_kvm); vfio_device_get_kvm_safe / put_kvm")
    _add(program, "lemma-close-local-kvm", And(*lk),
         "a thread closing an mdev's vfio device has read matrix_mdev->kvm into its local and, holding the "
         "group_lock, finds it unchanged until vfio_ap_mdev_unset_kvm clears it",
         "vfio_device_group_close -> vfio_ap_mdev_close_device -> vfio_ap_mdev_unset_kvm")


def _add_removed_lemma(w: World, program: Program) -> None:
    """``lemma-mdev-removed``, for ``apcheck prove --parametric`` with ``mdev_remove`` among the operations (a
    PARAMETRIC_LEMMAS entry: stated for the universal scenario only, as the others)."""
    rm: list[Expr] = []
    for m in w.mdevs:
        # program points: vfio_ap_mdev_remove past the vfio core's wait for the last fd (the step that marks the
        # device unregistered) until its end
        waits = [a for a in program.actions if w.unregistered[m] in a.updates]
        for a in waits:
            th = program.threads[a.thread]
            end = th.done if th.done >= 0 else len(th.labels) - 1
            rm.append(Implies(_at(program, (a.thread, list(range(a.label + 1, end + 1)))), w.unregistered[m].var))
        if waits:
            # an unregistered device gets no new fd (the open fails: -ENODEV), so after the wait it has none, no
            # kvm of the vfio core's and no guest; only vfio_ap_mdev_remove frees the mdev, after its wait
            core = [w.vkvm[m].var == -1] if w.vkvm else []
            rm.append(Implies(w.unregistered[m].var, And(w.vopen[m].var == 0, w.mkvm[m].var == -1, *core)))
            rm.append(Implies(w.mdev.state[m].var == FREED, w.unregistered[m].var))
            if w.vkvm:  # the vfio core holds its kvm reference only while an fd is open (taken, dropped with it)
                rm.append(Implies(w.vkvm[m].var != -1, w.vopen[m].var >= 1))
        # with no step that publishes a hook (no open_device), a KVM's hook names the mdev attached to it or
        # nothing: vfio_ap_mdev_unset_kvm clears the hook before it clears matrix_mdev->kvm
        for v in w.vms:
            if all(_only_clears(a.updates[w.hook[v]], w.hook[v]) for a in program.actions if w.hook[v] in a.updates):
                rm.append(Implies(w.hook[v].var == m, w.mkvm[m].var == v))
    # program points: vfio_ap_mdev_unset_kvm, from its hook = NULL (for the kvm in its local) until it clears
    # matrix_mdev->kvm, finds that hook still NULL (no step publishes one meanwhile)
    for a in program.actions:
        for v in w.vms:
            e = a.updates.get(w.hook[v])
            if not (isinstance(e, Ite) and isinstance(e.a, Const) and e.a.value == -1 and isinstance(e.b, Var)
                    and e.b.field is w.hook[v]):
                continue
            later = [c.label for c in program.actions if c.thread == a.thread and c.label > a.label
                     and any(f in c.updates for f in w.mkvm)]
            if later and all(_only_clears(c.updates[w.hook[v]], w.hook[v])
                             for c in program.actions if w.hook[v] in c.updates):
                rm.append(Implies(_at(program, (a.thread, list(range(a.label + 1, min(later) + 1)))),
                                  Implies(e.c, w.hook[v].var == -1)))
    _add(program, "lemma-mdev-removed", And(*rm),
         "vfio_ap_mdev_remove, once past the vfio core's wait, finds the device unregistered; an unregistered "
         "device has no fd, no vfio core kvm and no guest, and only such an mdev is freed; with no hook "
         "published, a KVM's hook names only the mdev attached to it",
         "vfio_unregister_group_dev (waits for the last fd) -> vfio_ap_mdev_remove; vfio_ap_mdev_unset_kvm")


def _only_clears(e: Expr, f: Field) -> bool:
    """The update ``e`` of ``f`` sets it to -1 (NULL) or keeps it, whatever the branch."""
    if isinstance(e, Ite):
        return _only_clears(e.a, f) and _only_clears(e.b, f)
    return (isinstance(e, Var) and e.field is f) or (isinstance(e, Const) and e.value == -1)


def _add_frame(program: Program) -> None:
    # frame: fields that no step writes keep their initial value
    fr = [f.var == f.init for f in program.layout.fields
          if f.kind != "pc" and not any(f in a.updates for a in program.actions)]
    _add(program, "lemma-frame", And(*fr), "a field that no step of the scenario writes keeps its initial value",
         "(derived from the program: no step writes the field)")
