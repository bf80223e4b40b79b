"""The named properties of the vfio_ap model, each with a one-line statement and its source.

Safety (``always``): no-host-guest-sharing, no-two-guests, no-double-assignment,
crycb-within-bounds (dynamic eras), reset-before-owner-change, hook-safe,
one-mdev-per-kvm (v17 adds one-hook-registrant). Witnesses (``sometimes``) are
added only for what the scenario runs, so a NOT_WITNESSED verdict always means
the scenario failed to exercise something it contains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checker.expr import And, Implies, MaskConst, Not, Or, Select

from . import rules
from .world import CLEAN, HOST, ZCRYPT

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
        d = w.qdata[i, j].var
        for v in w.vms:
            rst.append(Implies(w.in_crycb(v, i, j), Or(d == CLEAN, d == 2 + v)))
        rst.append(Implies(w.drv[i, j].var == ZCRYPT, Or(d == CLEAN, d == HOST)))
    pb.always("reset-before-owner-change", And(*rst),
              "a queue reaches a guest or zcrypt only after a reset (ZAPQ) cleared its previous owner's data",
              "vfio_ap_mdev_reset_queue call sites; 'reset queues after adapter/domain unassignment' (v16)")
    pb.always("hook-safe", Not(w.hook_unsafe.var),
              "the PQAP hook (or kvm->arch.crypto.data) never leads a vCPU to a freed mdev or another/freed KVM",
              "priv.c handle_pqap -> vfio_ap handle_pqap (container_of(hook) / crypto.data)")
    one = []
    for m1 in w.mdevs:
        for m2 in w.mdevs:
            if m1 < m2:
                k1, k2 = w.mkvm[m1].var, w.mkvm[m2].var
                one.append(Not(And(k1 != -1, k1 == k2)))
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

