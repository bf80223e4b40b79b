"""Designs ``v15`` and ``v16``: the dynamic-configuration series as posted (Apr / May 2021).

``v15`` (kernel-facts §2(b), [S-v15], on (a2) 0cc00c8d4050): one global ``matrix_dev->lock``; the
``kvm_busy`` open-coded lock around set/unset_kvm (dropped while the masks are written); the unlocked
per-mdev PQAP hook; ``kvm_arch_crypto_set_masks`` takes ``kvm->lock`` itself (<= v5.14); hot plug:
assign takes ``matrix_dev->lock`` with ``mutex_trylock`` and updates the guest still holding it -- the
edge Halil's lockdep splat closes into ``vcpu->mutex -> matrix_dev->lock -> kvm->lock -> vcpu->mutex``;
``ap_perms_mutex`` is taken inside validation; in_use is ``mutex_trylock(matrix_dev->lock)``.

``v16`` (§2(c), "v16 08/14"): every hot-plug path commits through ``vfio_ap_mdev_commit_apcb``, which sets
``kvm_busy``, drops ``matrix_dev->lock`` around the masks and re-takes it; probe/remove wait for
``kvm_busy`` first; unassign resets the unplugged queues. Host configuration changes are not modelled for
these two (not retrieved). Both derive from 6.8. docs/designs/v15.md.
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or

from .. import rules
from ..kernel.kvm import KVM_S390, PRIV
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Body, E, Era, eq
from .linux_6_8 import LINUX_6_8
from .v15_paths import (
    assign_adapter_v15,
    assign_domain_v15,
    commit_v15,
    commit_v16,
    probe_queue_v15,
    probe_queue_v16,
    remove_queue_v15,
    remove_queue_v16,
    unassign_adapter_v15,
    unassign_adapter_v16,
    unassign_domain_v15,
    unassign_domain_v16,
)

SERIES_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
              "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
              "unassign_domain", "set_apie", "vfio_ap_init", "apmask_store", "aqmask_store", "unbind_queue")


@kernel(PRIV, name="handle_pqap")
def handle_pqap_module_hook(k: K, v: int) -> None:
    """priv.c (v5.3-v5.14) reads ``vcpu->kvm->arch.crypto.pqap_hook`` afresh for the NULL test, ``->owner``
    (try_module_get), ``->hook`` (the call) and ``module_put`` (issue 8 #5: a hook cleared in between is a
    NULL dereference here)."""
    w = k.w
    fl = w.in_pqap_flag(k.t, v)
    hook = w.hook[v].var
    out = k.label("pqap_out")
    b = Body()
    b.set(fl, True)
    k.step("handle_pqap", "priv.c: if (vcpu->kvm->arch.crypto.pqap_hook)", body=b, jumps=[(hook == -1, out)])
    for what in ("->owner: try_module_get", "->hook(vcpu): call vfio_ap handle_pqap"):
        b = Body()
        w.use_mdev(b, hook, f"kvm->arch.crypto.pqap_hook{what.split(':')[0]}")
        k.step("handle_pqap", f"priv.c: vcpu->kvm->arch.crypto.pqap_hook{what}", body=b)
    k.call("vfio_ap_ops.handle_pqap", v=v, skip="")
    b = Body()
    w.use_mdev(b, hook, "kvm->arch.crypto.pqap_hook->owner")
    k.step("handle_pqap", "priv.c: module_put(vcpu->kvm->arch.crypto.pqap_hook->owner)", body=b)
    b = Body()
    b.set(fl, False)
    b.set(k.local("hook", w.mslots), -1)
    k.at(out)
    k.step("handle_pqap", "priv.c: return", body=b)


@kernel(OPS, name="vfio_ap_ops.handle_pqap")
def vfio_ap_handle_pqap_a2(k: K, v: int, skip: str) -> None:
    """vfio_ap (a2): matrix_dev->lock; if (!pqap_hook) goto out_unlock; matrix_mdev = container_of(hook);
    wait_event_cmd(!kvm_busy) dropping the lock while waiting; if (!matrix_mdev->kvm) goto out; AQIC."""
    w = k.w
    hk = k.local("hook", w.mslots)
    hook = w.hook[v].var
    unl, check, wait, done = (k.label(n) for n in ("pqap_unlock", "pqap_check", "pqap_wait", "pqap_done"))
    k.lock(w.M, "handle_pqap")
    b = Body()
    b.set(hk, hook)
    w.hook_target_freed(b, hook, when=hook != -1)
    k.step("handle_pqap", "vfio_ap: if (!pqap_hook) goto out_unlock; matrix_mdev = container_of(pqap_hook)",
           body=b, jumps=[(hook == -1, unl)])
    h = hk.var
    k.at(check)
    b = Body()
    w.use_mdev(b, h, "matrix_mdev = container_of(pqap_hook)")
    busy = w.busy(h)
    w.hook_target_detached(b, v, h, when=Not(busy))
    k.unlock("handle_pqap", (w.M, Not(busy), None), body=b, jumps=[(busy, wait)], goto=done,
             text="vfio_ap: if (matrix_mdev->kvm_busy) wait; if (!matrix_mdev->kvm) goto out; AQIC; unlock")
    k.at(wait)
    k.unlock("handle_pqap", (w.M, None, None), text="wait_event_cmd(!kvm_busy): mutex_unlock")
    w.wait_flag(k.t, "handle_pqap", h)
    k.lock(w.M, "handle_pqap")
    k.goto(check)
    k.at(unl)
    k.unlock("handle_pqap", (w.M, None, None), text="vfio_ap: out_unlock: mutex_unlock")
    k.at(done)


@kernel(KVM_S390)
def kvm_arch_crypto_set_masks(k: K, fn: str, kv: Expr | int, apm: Expr | None, aqm: Expr | None,
                              src: Expr | int | None, release_m: bool, clear: bool = False) -> None:
    """kvm_arch_crypto_set_masks / _clear_masks (<= v5.14) lock kvm->lock themselves: block all vCPUs, write
    the APCB, VSIE restart, unblock. ``release_m``: the caller's matrix_dev->lock is dropped in the same step
    as kvm->lock. A state-chosen kvm gets one write step per VM (exact race footprints)."""
    w = k.w
    fn_k = "kvm_arch_crypto_set_masks" if not clear else "kvm_arch_crypto_clear_masks"
    if isinstance(kv, int):
        kvs, labels = [kv], None
    else:
        kvs = list(w.vms)
        labels = [k.label(f"masks_kvm{x}") for x in kvs]
    after = k.label("masks_done") if labels else None
    jumps = [(eq(kv, x), lab) for x, lab in zip(kvs, labels)] if labels else []
    k.lock(w.KL, fn_k, index=kv, kvm_index=kv, jumps=jumps)
    for n, x in enumerate(kvs):
        if labels:
            k.at(labels[n])
        b = Body()
        if clear:
            w.clear_masks(b, x)
        else:
            assert apm is not None and aqm is not None and src is not None
            w.set_masks(b, x, apm, aqm, src)
        rel = [(w.KL, None, x)] + ([(w.M, None, None)] if release_m else [])
        k.unlock(fn_k, *rel, body=b, goto=after,
                 text="kvm_s390_vcpu_block_all; write APCB; VSIE restart; unblock; mutex_unlock(kvm->lock)"
                      + ("; mutex_unlock(matrix_dev->lock)" if release_m else ""))
    if after:
        k.at(after)
        k.step(fn_k, "return")


@kernel(OPS, name="vfio_device_open")
def open_a2(k: K, mdev: int, vm: int) -> None:
    """Group notifier SET_KVM (a2): matrix_dev->lock { other mdev has this kvm -> -EPERM; kvm_get_kvm;
    kvm_busy = true }; set masks without the lock (kvm->lock inside); matrix_dev->lock { hook = ...;
    matrix_mdev->kvm = kvm; kvm_busy = false; wake_up_all }."""
    w, m, end = k.w, mdev, k.end()
    if vm in w.cfg.no_crycb:
        k.call("vfio_ap_mdev_set_kvm:no_crycb", mdev=mdev)
        return
    k.lock(w.M, "vfio_ap_mdev_group_notifier")
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (open)")
    other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
    ok = Not(other)
    w.get_kvm(b, vm, when=ok)
    w.busy_set(b, k.t, m, True, when=ok)
    k.ret(b, If(other, E["EPERM"], 0))
    k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), body=b, jumps=[(other, end)],
             text="other mdev has this kvm: -EPERM; kvm_get_kvm; kvm_busy = true; mutex_unlock")
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_set_kvm", kv=vm, apm=w.sapm[m].var, aqm=w.saqm[m].var,
           src=m, release_m=False)
    k.lock(w.M, "vfio_ap_mdev_set_kvm")
    b = Body()
    b.set(w.hook[vm], m)
    b.set(w.mkvm[m], vm)
    w.busy_set(b, k.t, m, False)
    b.set(w.vopen[m], True)
    k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), body=b,
             text="kvm->arch.crypto.pqap_hook = &pqap_hook; matrix_mdev->kvm = kvm; kvm_busy = false; "
                  "wake_up_all; unlock")


@kernel(OPS, name="vfio_device_close")
def release_a2(k: K, mdev: int) -> None:
    """vfio_ap_mdev_release (a2): matrix_dev->lock; wait for !kvm_busy; if attached: kvm_busy = true, drop the
    lock, clear masks (kvm->lock inside), re-take it, reset, hook = NULL, kvm_put_kvm, kvm = NULL."""
    w, m = k.w, mdev
    lk = k.local("kvm", w.kslots)
    wait, done = k.label("release_wait"), k.label("release_done")
    top = w.entry_label(k.t, "release_lock")
    k.lock(w.M, "vfio_ap_mdev_release")
    b = Body()
    b.set(lk, w.mkvm[m].var)
    b.set(w.closing[m], True)
    busy = w.busy(m)
    nokvm = And(Not(busy), w.mkvm[m].var == -1)
    detach = And(Not(busy), w.mkvm[m].var != -1)
    w.busy_set(b, k.t, m, True, when=detach)
    # busy: the wait path drops the lock (wait_event); no kvm: the release path does (issue 8 #4)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.M, detach, None), body=b, jumps=[(busy, wait), (nokvm, done)],
             text="wait for !kvm_busy; if (kvm) { kvm_busy = true; mutex_unlock }")
    kv = lk.var
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_unset_kvm", kv=kv, apm=None, aqm=None, src=None,
           release_m=False, clear=True)
    k.lock(w.M, "vfio_ap_mdev_unset_kvm")
    b = Body()
    w.reset_mdev_queues(b, m)
    b.set_at(w.hook, kv, -1)
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    w.busy_set(b, k.t, m, False)
    b.set(w.vopen[m], False)
    b.set(w.closing[m], False)
    k.ret(b, 0)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.M, None, None), body=b, goto=k.end(),
             text="vfio_ap_mdev_reset_queues; pqap_hook = NULL; kvm_put_kvm; matrix_mdev->kvm = NULL; "
                  "kvm_busy = false; wake_up_all; unlock")
    k.at(done)
    b = Body()
    b.set(w.vopen[m], False)
    b.set(w.closing[m], False)
    k.unlock("vfio_ap_mdev_release", (w.M, None, None), body=b, goto=k.end())
    k.at(wait)
    k.unlock("vfio_ap_mdev_release", (w.M, None, None), text="wait_event(!kvm_busy): mutex_unlock")
    w.wait_flag(k.t, "vfio_ap_mdev_release", m)
    k.goto(top)


def _mask_store_trylock(k: K, kind: str, reserve: list[int], release: list[int]) -> None:
    """``P{ newly reserved -> in_use = trylock(matrix_dev->lock) (fail -> -EBUSY) {verify_no_sharing};
    commit }``, then the reprobe (kernel-facts §1.3, §2(b)). in_use is consulted whenever the write sets
    bits (``reserve`` non-empty)."""
    w = k.w
    fn = f"{kind}mask_store"
    end = k.end()
    mine = w.apmask if kind == "ap" else w.aqmask
    width = w.nA if kind == "ap" else w.nD
    rmask, cmask = MaskConst(width, reserve), MaskConst(width, release)
    newly = rules.newly_reserved(mine.var, mine.var | rmask)
    busy_lab = k.label("in_use_trylock_failed")
    k.lock(w.P, fn)
    if reserve:
        k.t.trylock(w.M, "vfio_ap_mdev_resource_in_use", fail=busy_lab)
    b = Body()
    apms = [If(w.mdev_alive(m), w.apm[m].var, MaskConst(w.nA)) for m in w.mdevs]
    aqms = [If(w.mdev_alive(m), w.aqm[m].var, MaskConst(w.nD)) for m in w.mdevs]
    busy = rules.in_use(newly, w.aqmask.var, apms, aqms) if kind == "ap" else \
        rules.in_use(w.apmask.var, newly, apms, aqms)
    new, _err = rules.mask_store(mine.var, (mine.var | rmask) & ~cmask, busy)
    b.set(mine, new)
    k.ret(b, If(busy, E["EBUSY"], 0))
    rel = [(w.M, None, None), (w.P, None, None)] if reserve else [(w.P, None, None)]
    verify = "__verify_card_reservations" if kind == "ap" else "__verify_queue_reservations"
    k.unlock(f"{kind}mask_commit", *rel, body=b,
             text=f"{verify} -> vfio_ap in_use: verify_no_sharing; commit ap_perms.{kind[1]}m; unlock")
    ids = sorted(set(reserve) | set(release))
    qs = [(i, j) for i in ids for j in range(w.nD)] if kind == "ap" else [(i, j) for i in range(w.nA) for j in ids]
    k.call("ap_bus_revise_bindings", qs=qs)
    if reserve:
        k.goto(end)
        k.at(busy_lab)
        b = Body()
        k.ret(b, "EBUSY")
        k.unlock(fn, (w.P, None, None), body=b,
                 text="in_use: mutex_trylock(matrix_dev->lock) failed: -EBUSY; mutex_unlock(ap_perms_mutex)")


@kernel("drivers/s390/crypto/ap_bus.c", name="apmask_store")
def apmask_store_v15(k: K, reserve: list[int], release: list[int]) -> None:
    """apmask_store with the series' trylock in_use."""
    _mask_store_trylock(k, "ap", reserve, release)


@kernel("drivers/s390/crypto/ap_bus.c", name="aqmask_store")
def aqmask_store_v15(k: K, reserve: list[int], release: list[int]) -> None:
    """aqmask_store with the series' trylock in_use."""
    _mask_store_trylock(k, "aq", reserve, release)


ERA = Era(dynamic=True, hook="module", busy=True, matrix_lock="matrix_dev->lock", guests_lock="",
          vfio_lock=False, vfio_kvm_ref=False)

V15 = LINUX_6_8.derive(
    "v15",
    "v15 dynamic-config series (Apr 2021) on 0cc00c8d4050: one matrix_dev->lock, kvm_busy, unlocked per-mdev "
    "pqap hook, set_masks under matrix_dev->lock (lockdep splat [S-v15])",
    era=ERA,
    override=[handle_pqap_module_hook, vfio_ap_handle_pqap_a2, open_a2, release_a2, assign_adapter_v15,
              assign_domain_v15, unassign_adapter_v15, unassign_domain_v15, apmask_store_v15, aqmask_store_v15,
              probe_queue_v15, remove_queue_v15],
    add=[kvm_arch_crypto_set_masks, commit_v15],
    drop_operations=("adapter_standby", "adapter_online"),
    commits=("0cc00c8d4050",), doc="docs/designs/v15.md")

V16 = V15.derive(
    "v16",
    "v16 dynamic-config series (May 2021): vfio_ap_mdev_commit_apcb drops matrix_dev->lock around "
    "kvm_arch_crypto_set_masks under kvm_busy; unassign resets queues (v16 08/14)",
    override=[commit_v16, unassign_adapter_v16, unassign_domain_v16, probe_queue_v16, remove_queue_v16],
    doc="docs/designs/v15.md")

