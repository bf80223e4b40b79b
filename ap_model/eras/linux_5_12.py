"""Design ``5.12``: vfio_ap v5.12 - v5.14 (0cc00c8d4050 "fix circular lockdep when setting/clearing crypto
masks", with 8c0795d2a0f5 "fix memory leak in mdev remove callback" from 5.12.y) -- kernel-facts §2(a2).

The group notifier handles SET_KVM with the open-coded ``kvm_busy`` lock: matrix_dev->lock is dropped while
``kvm_arch_crypto_set_masks`` (which takes kvm->lock itself, <= v5.14) writes the CRYCB. priv.c calls the
per-mdev hook unlocked (``kvm_s390_module_hook``, re-read for every use). Pre-dynamic sysfs and AP bus rules
(as 5.15) except that a store also refuses while ``kvm_busy``. The v15/v16 series were posted on this tree
and share its functions. No vfio core group lock around open/release. docs/designs/5.12.md.
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, Not, Or

from ..kernel.kvm import KVM_S390, PRIV
from ..kernel.vfio_ap_ops import NO_HOOK, OPS
from ..kfunc import K, kernel
from ..world import Body, E, Era, eq
from .linux_5_15 import LINUX_5_15, SWALLOWED

VFIO_MDEV = "drivers/vfio/mdev/vfio_mdev.c"


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
    k.step("handle_pqap", "priv.c: if (vcpu->kvm->arch.crypto.pqap_hook)", body=b, jumps=[(hook == -1, out)],
           branches=[(hook != -1, "priv.c: vcpu->kvm->arch.crypto.pqap_hook set"),
                     (hook == -1, NO_HOOK)])
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
    wait_event_cmd(!kvm_busy) dropping the lock while waiting; if (!matrix_mdev->kvm) goto out; AQIC.
    ``skip``: the label right after the call where the caller (priv.c under pqap_hook_rwsem) goes when it
    finds no hook, folded into the first step; "" when the caller (the unlocked priv.c) tested it itself."""
    w = k.w
    hk = k.local("hook", w.mslots)
    hook = w.hook[v].var
    unl, check, wait = (k.label(n) for n in ("pqap_unlock", "pqap_check", "pqap_wait"))
    done = skip or k.label("pqap_done")
    if skip:
        k.lock(w.M, "handle_pqap", when=hook != -1, jumps=[(hook == -1, skip)], skip=NO_HOOK)
    else:
        k.lock(w.M, "handle_pqap")
    b = Body()
    b.set(hk, hook)
    w.hook_target_freed(b, hook, when=hook != -1)
    k.step("handle_pqap", "vfio_ap: if (!pqap_hook) goto out_unlock; matrix_mdev = container_of(pqap_hook)",
           body=b, jumps=[(hook == -1, unl)],
           branches=[(hook == -1, "vfio_ap: !pqap_hook: goto out_unlock"),
                     (hook != -1, "vfio_ap: matrix_mdev = container_of(pqap_hook)")])
    h = hk.var
    k.at(check)
    b = Body()
    w.use_mdev(b, h, "matrix_mdev = container_of(pqap_hook)")
    busy = w.busy(h)
    w.hook_target_detached(b, v, h, when=Not(busy))
    guest = w.kvm_of(h) != -1
    k.unlock("handle_pqap", (w.M, Not(busy), None), body=b, jumps=[(busy, wait)], goto=done,
             text="vfio_ap: if (matrix_mdev->kvm_busy) wait; if (!matrix_mdev->kvm) goto out; AQIC; unlock",
             branches=[(busy, "vfio_ap: matrix_mdev->kvm_busy: wait_event_cmd"),
                       (And(Not(busy), Not(guest)), "vfio_ap: !matrix_mdev->kvm: goto out_unlock; mutex_unlock"),
                       (And(Not(busy), guest), "vfio_ap: AQIC; mutex_unlock")])
    k.at(wait)
    k.unlock("handle_pqap", (w.M, None, None), text="wait_event_cmd(!kvm_busy): mutex_unlock")
    w.wait_flag(k.t, "handle_pqap", h)
    k.lock(w.M, "handle_pqap")
    k.goto(check)
    k.at(unl)
    k.unlock("handle_pqap", (w.M, None, None), text="vfio_ap: out_unlock: mutex_unlock")
    if not skip:
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


def notifier_entry(k: K, m: int, vm: int) -> tuple[str, Body, Expr] | None:
    """VFIO_GROUP_GET_DEVICE_FD (<= v5.14: no open count, device->ops->open on every open) up to "another
    mdev has this kvm": None for a VM without a CRYCB (handled); else (the label of the no-kvm tail, the
    block under matrix_dev->lock, the -EPERM condition).

    vfio_group_get_device_fd -> vfio_device_get_from_name takes a reference on the vfio_device (the fd
    keeps it; vfio_del_group_dev in the mdev's remove waits for it); a device no longer in the group's
    device_list (its remove is past that wait) is not found: -ENODEV. Then vfio_mdev_open ->
    vfio_ap_mdev_open registers the group notifier, which replays SET_KVM(kvm) if group->kvm is set. With
    the VM gone (group->kvm cleared by kvm_vfio_release) nothing is replayed: the lock step jumps to the
    no-kvm tail, which the caller emits. The lookup is folded into the notifier's lock step (the lookup
    touches only the vfio core's device list, which no other modelled step reads)."""
    w = k.w
    if vm in w.cfg.no_crycb:
        k.call("vfio_ap_mdev_set_kvm:no_crycb", mdev=m)
        return None
    no_kvm = k.label("open_no_kvm")
    alive = w.kvm_alive(vm)
    found = w.vfio_device_gettable(m)
    b = Body()
    w.vfio_users(b, m, 1, when=found)
    k.ret(b, E["ENODEV"], when=Not(found))
    k.lock(w.M, "vfio_ap_mdev_group_notifier", when=And(found, alive), body=b,
           jumps=[(Not(found), k.end()), (Not(alive), no_kvm)],
           branches=[(Not(found), "vfio_device_get_from_name: mdev removed, no device: -ENODEV"),
                     (found, "vfio_device_get_from_name: vfio_device_get"),
                     (And(found, Not(alive)), "group->kvm == NULL: no SET_KVM replayed"),
                     (And(found, alive), "{lock}")])
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (open)")
    return no_kvm, b, Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])


@kernel(VFIO_MDEV, name="vfio_device_open")
def open_a2(k: K, mdev: int, vm: int) -> None:
    """vfio_ap_mdev_open registers the group notifier, which replays SET_KVM if group->kvm is set (a2):
    matrix_dev->lock { other mdev has this kvm -> -EPERM; kvm_get_kvm; kvm_busy = true }; the masks are set
    with the lock dropped (kvm->lock inside); matrix_dev->lock { matrix_mdev->kvm = kvm; kvm_busy = false }.
    With the VM gone (group->kvm cleared by kvm_vfio_release) nothing is replayed and the open succeeds."""
    w, m, end = k.w, mdev, k.end()
    entry = notifier_entry(k, m, vm)
    if entry is None:
        return
    no_kvm, b, other = entry
    ok = Not(other)
    w.get_kvm(b, vm, when=ok)
    w.busy_set(b, k.t, m, True, when=ok)
    k.ret(b, 0)
    k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), body=b, jumps=[(other, end)],
             text="other mdev has this kvm: -EPERM; kvm_get_kvm; kvm_busy = true; mutex_unlock",
             branches=[(other, f"another mdev has this kvm: {SWALLOWED}"),
                       (ok, "kvm_get_kvm; kvm_busy = true"), (None, "mutex_unlock")])
    k.call("vfio_ap_mdev_set_kvm:publish_hook", mdev=m, vm=vm)
    apm, aqm = w.guest_masks(m)
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_set_kvm", kv=vm, apm=apm, aqm=aqm, src=m, release_m=False)
    k.lock(w.M, "vfio_ap_mdev_set_kvm")
    b = Body()
    hook = k.call("vfio_ap_mdev_set_kvm:hook_under_lock", b=b, mdev=m, vm=vm)
    b.set(w.mkvm[m], vm)
    w.busy_set(b, k.t, m, False)
    k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), body=b, goto=end,
             text=f"{hook}matrix_mdev->kvm = kvm; kvm_busy = false; wake_up_all; unlock")
    k.at(no_kvm)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (open)")
    k.ret(b, 0)
    k.step("vfio_ap_mdev_open", "group->kvm == NULL: no SET_KVM replayed; open returns 0", body=b)


@kernel(OPS, name="vfio_ap_mdev_set_kvm:publish_hook")
def no_publish_hook(k: K, mdev: int, vm: int) -> None:
    """a2: the hook is written with matrix_mdev->kvm under the lock (hunk :hook_under_lock), not here."""


@kernel(OPS, name="vfio_ap_mdev_set_kvm:hook_under_lock")
def hook_set_under_lock(k: K, b: Body, mdev: int, vm: int) -> str:
    """kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook (under matrix_dev->lock). Returns the step's text
    for it ("" where the era publishes the hook elsewhere), as the unset hunk does."""
    b.set(k.w.hook[vm], mdev)
    return "kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; "


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:clear_hook")
def no_unset_clear_hook(k: K, kv: Expr) -> None:
    """a2: the hook is cleared under the lock with the put (hunk :hook_under_lock), not here."""


@kernel(OPS, name="vfio_ap_mdev_unset_kvm:hook_under_lock")
def hook_unset_under_lock(k: K, b: Body, kv: Expr) -> str:
    """kvm->arch.crypto.pqap_hook = NULL (under matrix_dev->lock); returns the step's text for it."""
    b.set_at(k.w.hook, kv, -1)
    return "kvm->arch.crypto.pqap_hook = NULL; "


def _unset_a2(k: K, m: int, release: bool) -> None:
    """vfio_ap_mdev_unset_kvm (a2) from the release (``release``: the device closes) or from the group
    notifier's SET_KVM(NULL): matrix_dev->lock; wait while kvm_busy; if attached: kvm_busy = true, drop the
    lock, clear the masks (kvm->lock inside), re-take it, reset, kvm_put_kvm, kvm = NULL, kvm_busy = false."""
    w = k.w
    fn = "vfio_ap_mdev_release" if release else "vfio_ap_mdev_group_notifier"
    lk = k.local("kvm", w.kslots)
    wait, done = k.label("release_wait"), k.label("release_done")
    top = w.entry_label(k.t, "release_lock")
    k.lock(w.M, fn)
    b = Body()
    b.set(lk, w.mkvm[m].var)
    if release:
        b.set(w.closing[m], True)
    busy = w.busy(m)
    nokvm = And(Not(busy), w.mkvm[m].var == -1)
    detach = And(Not(busy), w.mkvm[m].var != -1)
    w.busy_set(b, k.t, m, True, when=detach)
    # busy: the wait path drops the lock (wait_event); no kvm: the release path does (issue 8 #4)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.M, detach, None), body=b, jumps=[(busy, wait), (nokvm, done)],
             text="wait for !kvm_busy; if (kvm) { kvm_busy = true; mutex_unlock }",
             branches=[(busy, "matrix_mdev->kvm_busy: wait_event_cmd"),
                       (nokvm, "matrix_mdev->kvm == NULL: nothing to detach"),
                       (detach, "matrix_mdev->kvm set: kvm_busy = true; mutex_unlock")])
    kv = lk.var
    k.call("vfio_ap_mdev_unset_kvm:clear_hook", kv=kv)
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_unset_kvm", kv=kv, apm=None, aqm=None, src=None,
           release_m=False, clear=True)
    k.lock(w.M, "vfio_ap_mdev_unset_kvm")
    b = Body()
    w.reset_mdev_queues(b, m)
    hook = k.call("vfio_ap_mdev_unset_kvm:hook_under_lock", b=b, kv=kv)
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    w.busy_set(b, k.t, m, False)
    if release:
        w.vfio_users(b, m, -1, when=b[w.vopen[m]] > 0)
        b.set(w.closing[m], False)
    k.ret(b, 0)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.M, None, None), body=b, goto=k.end(),
             text=f"vfio_ap_mdev_reset_queues; {hook}kvm_put_kvm; matrix_mdev->kvm = NULL; kvm_busy = false; "
                  "wake_up_all; unlock")
    k.at(done)
    b = Body()
    if release:
        w.vfio_users(b, m, -1, when=b[w.vopen[m]] > 0)
        b.set(w.closing[m], False)
    k.unlock(fn, (w.M, None, None), body=b, goto=k.end())
    k.at(wait)
    k.unlock(fn, (w.M, None, None), text="wait_event(!kvm_busy): mutex_unlock")
    w.wait_flag(k.t, fn, m)
    k.goto(top)


@kernel(VFIO_MDEV, name="vfio_device_close")
def release_a2(k: K, mdev: int) -> None:
    """vfio_ap_mdev_release: vfio_ap_mdev_unset_kvm, the device closes."""
    _unset_a2(k, mdev, release=True)


@kernel("virt/kvm/vfio.c", name="kvm_vfio_group_del")
def kvm_vfio_group_del_a2(k: K, vm: int, mdev: int) -> None:
    """KVM_DEV_VFIO_GROUP_DEL: kvm_vfio_group_set_kvm(group, NULL) -> the group notifier's SET_KVM(NULL) ->
    vfio_ap_mdev_unset_kvm (a2); the device stays open. (The group's kvm is ``vm``'s: an mdev attached to
    another VM is not touched.)"""
    w = k.w
    end = k.end()
    k.step("kvm_vfio_group_set_kvm", f"vfio_group_set_kvm(group of mdev{mdev}, NULL): SET_KVM(NULL)",
           jumps=[(w.mkvm[mdev].var != vm, end)])
    _unset_a2(k, mdev, release=False)


ERA = Era(dynamic=False, hook="module", busy=True, matrix_lock="matrix_dev->lock", guests_lock="",
          vfio_lock=False, vfio_kvm_ref=False)

LINUX_5_12 = LINUX_5_15.derive(
    "5.12",
    "v5.12-v5.14: group notifier with the open-coded kvm_busy lock (0cc00c8d4050), unlocked per-mdev pqap "
    "hook, kvm_arch_crypto_set_masks takes kvm->lock itself, pre-dynamic",
    era=ERA,
    override=[handle_pqap_module_hook, vfio_ap_handle_pqap_a2, open_a2, release_a2, no_publish_hook,
              kvm_vfio_group_del_a2],
    add=[kvm_arch_crypto_set_masks, hook_set_under_lock, no_unset_clear_hook, hook_unset_under_lock],
    commits=("0cc00c8d4050", "8c0795d2a0f5"), doc="docs/designs/5.12.md")
