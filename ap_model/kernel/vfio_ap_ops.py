"""vfio_ap kernel functions of the upstream design (drivers/s390/crypto/vfio_ap_ops.c, v6.x), written once:
mdev lifecycle, open/close (with the vfio core around them), the PQAP hook, the sysfs attributes.

Lock order ``ap_perms_mutex -> guests_lock -> kvm->lock -> mdevs_lock`` (vfio-ap-locking.rst); the PQAP
hook is per KVM under ``kvm->arch.crypto.pqap_hook_rwsem``; the vfio core holds its own kvm reference from
open to close (2b48f52f2bff, 6.2) and group_lock around open_device/close_device. kernel-facts §2(e).
"""

from __future__ import annotations

from typing import Any

from checker.lang.expr import And, Expr, If, Not, Or, Select
from checker.lang.layout import Field

from ..kfunc import K, kernel
from ..world import Body, E
from .bodies import assign_body, assign_refusals, attach, refresh, unplug_adapter, unplug_domain

OPS = "drivers/s390/crypto/vfio_ap_ops.c"
VFIO_GROUP = "drivers/vfio/group.c"


NO_KVM_LOCK = "matrix_mdev->kvm == NULL: no kvm->lock"
NO_IN_USE = "no bit newly reserved: in_use not called"
NO_HOOK = "priv.c: pqap_hook == NULL: response code 0x01, cc 3"  # handle_pqap with no hook (every era)


def attached(mk: Expr | int) -> Expr | None:
    """Condition of ``if (matrix_mdev->kvm) mutex_lock(&kvm->lock)``; None for a known VM."""
    return None if isinstance(mk, int) else mk != -1


# ---------------------------------------------------------------- update locks


@kernel(OPS)
def get_update_locks_for_mdev(k: K, fn: str, mk: Expr | int, perms: bool = False,
                              found: tuple[Field, Expr] | None = None) -> None:
    """get_update_locks_for_mdev / _by_apqn / _for_queue / _for_kvm: [ap_perms_mutex] -> guests_lock ->
    [the kvm->lock of matrix_mdev->kvm, if attached] -> mdevs_lock (``fn`` names the caller). ``found``: the
    C local that keeps the matrix_mdev looked up under guests_lock (_by_apqn / _for_queue), and that mdev."""
    w = k.w
    if perms:
        k.lock(w.P, fn)
    k.lock(w.G, fn)
    k.lock(w.KL, fn, when=attached(mk), index=mk, kvm_index=mk, skip=NO_KVM_LOCK, body=found_body(found))
    k.lock(w.M, fn)


def found_body(found: tuple[Field, Expr] | None) -> Body | None:
    """The step that looks the mdev up also stores it in the caller's local (None: no local)."""
    if found is None:
        return None
    b = Body()
    b.set(found[0], found[1])
    return b


@kernel(OPS)
def release_update_locks_for_mdev(k: K, mk: Expr | int, perms: bool = False) -> list[tuple[Any, ...]]:
    """The releases of the matching get_update_locks_* (one unlock step carries them)."""
    w = k.w
    rel: list[tuple[Any, ...]] = [(w.M, None, None), (w.KL, attached(mk), mk), (w.G, None, None)]
    if perms:
        rel.append((w.P, None, None))
    return rel


# ---------------------------------------------------------------- PQAP hook


@kernel(OPS, name="vfio_ap_ops.handle_pqap")
def vfio_ap_handle_pqap(k: K, v: int, skip: str) -> None:
    """vfio_ap's handle_pqap (called by priv.c with the hook's rwsem read-held; ``skip``: priv.c found
    no hook): mdevs_lock; matrix_mdev = container_of(hook); if (!matrix_mdev->kvm) goto out; AQIC."""
    w = k.w
    hook = w.hook[v].var
    has = hook != -1
    b = Body()
    w.hook_target_freed(b, hook, when=has)
    k.lock(w.M, "handle_pqap", when=has, jumps=[(Not(has), skip)], body=b, skip=NO_HOOK)
    # only reached with mdevs_lock taken; the hook cannot change meanwhile (its rwsem is read-held)
    b = Body()
    w.use_mdev(b, hook, "matrix_mdev = container_of(pqap_hook)", when=has)
    w.hook_target_detached(b, v, hook, when=has)
    guest = w.kvm_of(hook) != -1
    k.unlock("handle_pqap", (w.M, None, None), body=b,
             text="vfio_ap: matrix_mdev = container_of(hook); if (!matrix_mdev->kvm) goto out; AQIC; unlock",
             branches=[(hook == -1, "vfio_ap: no hook"),
                       (hook != -1, "vfio_ap: matrix_mdev = container_of(hook)"),
                       (And(hook != -1, Not(guest)), "!matrix_mdev->kvm: goto out_unlock"),
                       (And(hook != -1, guest), "AQIC"), (hook != -1, f"mutex_unlock({w.M.name})")])


# ---------------------------------------------------------------- open / close


@kernel(VFIO_GROUP)
def vfio_device_open(k: K, mdev: int, vm: int) -> None:
    """vfio_device_group_open (group_lock held) -> vfio_device_open: open_count++; only the first open
    (open_count was 0) takes the vfio core's own kvm reference (kvm_get_kvm_safe) and calls
    vfio_ap_mdev_open_device -> vfio_ap_mdev_set_kvm; on failure the core drops it and open_count--.
    A later open only counts its fd: no kvm check, no set_kvm."""
    w, m, end = k.w, mdev, k.end()
    if vm in w.cfg.no_crycb:
        k.call("vfio_ap_mdev_set_kvm:no_crycb", mdev=mdev)
        return
    unlock_vg, failed = k.label("open_unlock"), k.label("open_failed")
    k.lock(w.VG, "vfio_device_group_open", index=m)
    b = Body()
    alive = w.vfio_device_gettable(m)
    again = w.vopen[m].var != 0
    # kvm_vfio_release (from kvm_destroy_vm, before the struct kvm is freed) cleared group->kvm, and
    # kvm_get_kvm_safe takes a reference only while the count is non-zero: no kvm -> vfio_ap's
    # open_device returns -EINVAL (issue 8 #1)
    has_kvm = w.kvm_alive(vm)
    ok = And(alive, Not(again), has_kvm)
    w.vfio_users(b, m, 1, when=And(alive, Or(again, has_kvm)))
    w.get_kvm(b, vm, when=ok)
    b.set(w.vkvm[m], vm, when=ok)
    k.ret(b, If(alive, If(Or(again, has_kvm), 0, E["EINVAL"]), E["ENODEV"]))
    k.step("vfio_device_get_kvm_safe", "vfio core: open_count++; first open: group->kvm && "
                                       "kvm_get_kvm_safe(group->kvm); vfio_ap_mdev_open_device",
           body=b, jumps=[(Not(ok), unlock_vg)],
           branches=[(Not(alive), "mdev removed: -ENODEV"),
                     (And(alive, again), "vfio core: open_count++ (already open: open_device not called)"),
                     (ok, "vfio core: open_count = 1; kvm_get_kvm_safe(group->kvm); vfio_ap_mdev_open_device"),
                     (And(alive, Not(again), Not(has_kvm)), "vfio core: no group->kvm (VM released): "
                                                            "vdev->kvm == NULL; vfio_ap_mdev_open_device: -EINVAL")])
    k.call("vfio_ap_mdev_set_kvm", mdev=m, vm=vm, failed=failed)
    k.at(unlock_vg)
    k.unlock("vfio_device_group_open", (w.VG, None, m), goto=end)
    k.at(failed)
    k.call("vfio_ap_mdev_set_kvm:error", mdev=m, vm=vm)
    b = Body()
    w.put_kvm(b, vm)
    b.set(w.vkvm[m], -1)
    w.vfio_users(b, m, -1)
    k.unlock("vfio_device_put_kvm", (w.VG, None, m), body=b,
             text="open_device failed: vfio core kvm_put_kvm; open_count--; mutex_unlock(group_lock)")


@kernel(OPS, name="vfio_ap_mdev_set_kvm:no_crycb")
def set_kvm_no_crycb(k: K, mdev: int) -> None:
    """``if (kvm->arch.crypto.crycbd)`` is false: set_kvm sets nothing (no hook, no kvm, no masks) and
    returns 0 in every modelled era (the v4.20 open callback failed instead, [S-v10]); the fd is counted
    (a removed mdev's device is not found: -ENODEV)."""
    w = k.w
    b = Body()
    found = w.vfio_device_gettable(mdev)
    w.use_mdev(b, mdev, "matrix_mdev (open_device)", when=found)
    w.vfio_users(b, mdev, 1, when=found)
    k.ret(b, If(found, 0, E["ENODEV"]))
    k.step("vfio_ap_mdev_set_kvm", "kvm->arch.crypto.crycbd == 0: nothing to set up", body=b,
           branches=[(Not(found), "mdev removed: -ENODEV"),
                     (found, "kvm->arch.crypto.crycbd == 0: nothing to set up")])


@kernel(OPS)
def vfio_ap_mdev_set_kvm(k: K, mdev: int, vm: int, failed: str) -> None:
    """Publish the hook under pqap_hook_rwsem (BEFORE the check: kernel-facts §5 C1), then under the update
    locks: another mdev has this kvm -> -EPERM (jump to ``failed``); kvm_get_kvm; matrix_mdev->kvm = kvm;
    vfio_ap_mdev_update_guest_apcb."""
    w, m = k.w, mdev
    k.call("vfio_ap_mdev_set_kvm:publish_hook", mdev=m, vm=vm)
    k.call("get_update_locks_for_mdev", fn="get_update_locks_for_kvm", mk=vm)
    b = Body()
    other = attach(w, b, m, vm, b[w.sapm[m]], b[w.saqm[m]])
    k.ret(b, If(other, E["EPERM"], 0))
    k.unlock("vfio_ap_mdev_set_kvm", *k.call("release_update_locks_for_mdev", mk=vm), body=b,
             text="if another mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                  "vfio_ap_mdev_update_guest_apcb; release_update_locks_for_kvm",
             jumps=[(other, failed)],
             branches=[(other, "another mdev has this kvm: -EPERM"),
                       (Not(other), "kvm_get_kvm; matrix_mdev->kvm = kvm; vfio_ap_mdev_update_guest_apcb"),
                       (None, "release_update_locks_for_kvm")])


@kernel(OPS, name="vfio_ap_mdev_set_kvm:error")
def set_kvm_error(k: K, mdev: int, vm: int) -> None:
    """The -EPERM path of 6.x leaves kvm->arch.crypto.pqap_hook naming this mdev (kernel-facts §5 C1): no
    statement here; mainline's fix puts the old pointer back."""


@kernel(OPS, name="vfio_ap_mdev_set_kvm:publish_hook")
def publish_hook(k: K, mdev: int, vm: int) -> None:
    """down_write(pqap_hook_rwsem); kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; up_write."""
    w = k.w
    k.lock(w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    b = Body()
    b.set(w.hook[vm], mdev)
    k.unlock("vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
             text="kvm->arch.crypto.pqap_hook = &matrix_mdev->pqap_hook; up_write")


@kernel(VFIO_GROUP)
def vfio_device_close(k: K, mdev: int) -> None:
    """vfio_device_group_close (group_lock held): vfio_ap_mdev_close_device -> vfio_ap_mdev_unset_kvm,
    then the vfio core drops its own kvm reference (may be the last: kvm_destroy_vm)."""
    w, m, end = k.w, mdev, k.end()
    not_last, vput = k.label("close_not_last"), k.label("close_vfio_put")
    users = w.vopen[m].var
    kv = w.close_device_entry(k.t, m, "vfio_device_group_close",
                              [(users != 1, not_last), (w.mkvm[m].var == -1, vput)])
    k.call("vfio_ap_mdev_unset_kvm", mdev=m, kv=kv)
    k.at(vput)
    b = Body()
    vk = w.vkvm[m].var
    w.put_kvm(b, vk, when=vk != -1)
    b.set(w.vkvm[m], -1)
    w.vfio_users(b, m, -1)
    b.set(w.closing[m], False)
    b.set(k.local("kvm", w.kslots), -1)
    last = And(vk != -1, w.kvm.refcount(vk) == 1)
    k.unlock("vfio_device_put_kvm", (w.VG, None, m), body=b,
             text="vfio core: kvm_put_kvm (may be the last: kvm_destroy_vm); mutex_unlock(group_lock)", goto=end,
             branches=[(vk == -1, "vfio core: no kvm reference held"),
                       (last, "vfio core: kvm_put_kvm, the last reference: kvm_destroy_vm"),
                       (And(vk != -1, Not(last)), "vfio core: kvm_put_kvm"), (None, "mutex_unlock(group_lock)")])
    k.at(not_last)  # open_count > 1: only this fd goes; 0: no fd (the scenario closes a device it never got)
    b = Body()
    w.vfio_users(b, m, -1, when=users > 1)
    b.set(w.closing[m], False)
    k.unlock("vfio_device_group_close", (w.VG, None, m), body=b,
             branches=[(users > 1, "open_count-- (not the last fd: close_device not called)"),
                       (None, "mutex_unlock(group_lock)")])


@kernel(OPS)
def vfio_ap_mdev_unset_kvm(k: K, mdev: int, kv: Expr) -> None:
    """Hook = NULL under pqap_hook_rwsem; then under guests_lock, kvm->lock, mdevs_lock: clear masks, reset
    the queues, kvm_put_kvm, matrix_mdev->kvm = NULL; kvm->lock is unlocked after the put."""
    w, m = k.w, mdev
    k.lock(w.HR, "vfio_ap_mdev_unset_kvm", index=kv, kvm_index=kv)
    b = Body()
    b.set_at(w.hook, kv, -1)
    k.unlock("vfio_ap_mdev_unset_kvm", (w.HR, None, kv), body=b, text="kvm->arch.crypto.pqap_hook = NULL; up_write")
    k.call("get_update_locks_for_mdev", fn="get_update_locks_for_kvm", mk=kv)
    b = Body()
    w.clear_masks(b, kv)
    w.reset_mdev_queues(b, m)
    rc = Select([f.var for f in w.kvm.refs], kv, 0)  # type: ignore[union-attr]
    b.check(rc == 1, "memory-safety",
            "use after free: mutex_unlock(&kvm->lock) after the last kvm_put_kvm (kvm_destroy_vm freed kvm)")
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    k.ret(b, 0)
    k.unlock("vfio_ap_mdev_unset_kvm", *k.call("release_update_locks_for_mdev", mk=kv), body=b,
             text="kvm_arch_crypto_clear_masks; vfio_ap_mdev_reset_queues; kvm_put_kvm; "
                  "matrix_mdev->kvm = NULL; release_update_locks_for_kvm")


# ---------------------------------------------------------------- mdev lifecycle


@kernel(OPS)
def vfio_ap_mdev_probe(k: K, mdev: int) -> None:
    """echo UUID > create: kzalloc matrix_mdev; list_add(mdev_list) under the matrix lock (ENODEV while the
    module is not loaded: no mdev parent)."""
    w = k.w
    if not w.cfg.module_loaded or "vfio_ap_exit" in w.scenario_ops:  # the mdev parent exists while loaded
        ok, end = w.loaded.var, k.end()
        b = Body()
        k.ret(b, If(ok, 0, E["ENODEV"]))
        k.lock(w.M, "vfio_ap_mdev_probe", when=ok, body=b, jumps=[(Not(ok), end)],
               branches=[(Not(ok), "vfio_ap not loaded, no mdev parent: -ENODEV"), (ok, "{lock}")])
    else:
        k.lock(w.M, "vfio_ap_mdev_probe")
    b = Body()
    b.merge(*w.pb.alloc(w.mdev, mdev))
    k.ret(b, "0")
    k.unlock("vfio_ap_mdev_probe", (w.M, None, None), body=b,
             text="kzalloc matrix_mdev; list_add(mdev_list); mutex_unlock")


@kernel(OPS)
def vfio_ap_mdev_remove(k: K, mdev: int) -> None:
    """The vfio core waits until the device is closed; then guests_lock -> mdevs_lock: reset the queues,
    unlink them, list_del, kfree(matrix_mdev).

    5.15+: vfio_unregister_group_dev drops the registration reference and waits for every fd's: an open
    or close in progress holds one (taken before group_lock, dropped after it) and no new fd gets one.
    Before (vfio_mdev_remove -> vfio_del_group_dev, then mdev core -> vfio_ap_mdev_remove): the driver's
    vfio_device_put, then wait until the device leaves the group's device_list, i.e. until the last
    reference of an fd or of a VFIO_GROUP_GET_DEVICE_FD in progress is put; later lookups fail (-ENODEV)."""
    w, m = k.w, mdev
    b = Body()
    b.set(w.unregistered[m], True)
    in_progress = [w.VG[m].is_free()] if w.VG else []
    k.step("vfio_unregister_group_dev" if w.VG else "vfio_del_group_dev",
           "wait until the vfio device is closed (request -> QEMU)",
           guard=And(w.vopen[m].var == 0, *in_progress), body=b)
    if w.G is not None:
        k.lock(w.G, "vfio_ap_mdev_remove", mode="w")
    k.lock(w.M, "vfio_ap_mdev_remove")
    b = Body()
    w.remove_mdev_body(b, m)
    k.ret(b, 0)
    rel: list[tuple[Any, ...]] = [(w.M, None, None)]
    if w.G is not None:
        rel.append((w.G, None, None, "w"))
    k.unlock("vfio_ap_mdev_remove", *rel, body=b,
             text="reset queues; unlink queues; list_del; unlock; kfree(matrix_mdev)")


# ---------------------------------------------------------------- sysfs attributes


@kernel(OPS, name="assign_store:lock")
def assign_store_lock(k: K, fn: str, mk: Expr | int) -> None:
    """The locks of assign_adapter_store / assign_domain_store (v6.0+, "[PATCH v19 15/20]"):
    ap_perms_mutex first, then the update locks (the AP bus reservation helpers no longer lock it)."""
    k.call("get_update_locks_for_mdev", fn=fn, mk=mk, perms=True)


@kernel(OPS, name="assign_store:unlock")
def assign_store_unlock(k: K, mk: Expr | int) -> list[tuple[Any, ...]]:
    """The matching releases (one step)."""
    return k.call("release_update_locks_for_mdev", mk=mk, perms=True)  # type: ignore[no-any-return]


@kernel(OPS, name="store:bypass")
def store_bypass(k: K, b: Body, f: Any, x: int, assign: bool) -> Expr | None:
    """"s390/vfio-ap: bypass unnecessary processing of AP resources" (Aug 2022, v6.0): an assign store of a
    bit already set, or an unassign of a bit already clear, returns count at once, still under the locks
    (adapter, domain and control domain). Returns that condition (None: the era has no such test)."""
    return b[f].has(x) if assign else Not(b[f].has(x))


BYPASSED = "return count (bypass)"


def _assign(k: K, m: int, kind: str, x: int) -> None:
    w = k.w
    fn = f"assign_{kind}_store"
    mk = w.mkvm[m].var
    k.call("assign_store:lock", fn=fn, mk=mk)
    b = Body()
    done = k.call("store:bypass", b=b, f=w.apm[m] if kind == "adapter" else w.aqm[m], x=x, assign=True)
    if done is not None:
        w.use_mdev(b, m, "matrix_mdev (sysfs attribute)", when=done)
        k.ret(b, 0, when=done)
    ok = assign_body(w, b, k.t, m, kind, x, when=None if done is None else Not(done))
    changed = k.call("vfio_ap_mdev_filter_matrix", b=b, m=m, when=ok)
    k.unlock(fn, *k.call("assign_store:unlock", mk=mk), body=b,
             text=f"set bit; vfio_ap_mdev_validate_masks; vfio_ap_mdev_link_{kind}; "
                  "vfio_ap_mdev_filter_matrix; update_guest_apcb; unlock",
             branches=[*([(done, f"{kind} already assigned: {BYPASSED}")] if done is not None else []),
                       *assign_refusals(w, b, k.t, Or(ok, done) if done is not None else ok),
                       (ok, f"set bit; vfio_ap_mdev_validate_masks; vfio_ap_mdev_link_{kind}; "
                            "vfio_ap_mdev_filter_matrix"),
                       (changed, "shadow changed: vfio_ap_mdev_update_guest_apcb"),
                       (And(ok, Not(changed)), "shadow unchanged"), (None, "unlock")])


def _unassign(k: K, m: int, kind: str, x: int) -> None:
    w = k.w
    fn = f"unassign_{kind}_store"
    mk = w.mkvm[m].var
    k.call("get_update_locks_for_mdev", fn=fn, mk=mk)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    f = w.apm[m] if kind == "adapter" else w.aqm[m]
    done = k.call("store:bypass", b=b, f=f, x=x, assign=False)
    go = None if done is None else Not(done)
    b.set(f, b[f].without_bit(x), when=go)
    was = (unplug_adapter if kind == "adapter" else unplug_domain)(w, b, m, x, when=go)
    k.ret(b, 0)
    k.unlock(fn, *k.call("release_update_locks_for_mdev", mk=mk), body=b,
             text=f"clear bit; vfio_ap_mdev_unlink_{kind}; hot unplug from shadow + guest; reset queues; unlock",
             branches=[*([(done, f"{kind} not assigned: {BYPASSED}")] if done is not None else []),
                       (go, f"clear bit; vfio_ap_mdev_unlink_{kind}"),
                       (was, f"in the shadow: vfio_ap_mdev_hot_unplug_{kind} (shadow, guest); reset its queues"),
                       (And(Not(was), go) if go is not None else Not(was),
                        "not in the shadow: guest unchanged, no reset"), (None, "unlock")])


@kernel(OPS)
def assign_adapter_store(k: K, mdev: int, apid: int) -> None:
    """ap_perms_mutex -> update locks; set bit; validate (EADDRNOTAVAIL/EADDRINUSE, revert); link; filter;
    update the guest; reset filtered APIDs."""
    _assign(k, mdev, "adapter", apid)


@kernel(OPS)
def assign_domain_store(k: K, mdev: int, apqi: int) -> None:
    """As assign_adapter_store, for a domain."""
    _assign(k, mdev, "domain", apqi)


@kernel(OPS)
def unassign_adapter_store(k: K, mdev: int, apid: int) -> None:
    """Update locks; clear bit; unlink; hot unplug from the shadow and the guest; reset the queues."""
    _unassign(k, mdev, "adapter", apid)


@kernel(OPS)
def unassign_domain_store(k: K, mdev: int, apqi: int) -> None:
    """As unassign_adapter_store, for a domain."""
    _unassign(k, mdev, "domain", apqi)


@kernel(OPS, name="unassign_control_domain_store:shadow")
def unassign_cdom_shadow(k: K, b: Body, m: int, x: int, when: Expr | None) -> tuple[Expr, str]:
    """v6.0+ (from v18 07/18 on): no re-filter: if the shadow APCB has the control domain, clear it there
    (then the guest is updated). Returns (shadow changed, what the step does)."""
    w = k.w
    had = b[w.sadm[m]].has(x) if when is None else And(when, b[w.sadm[m]].has(x))
    b.set(w.sadm[m], b[w.sadm[m]].without_bit(x), when=had)
    return had, "clear adm bit; shadow adm has it: clear it there"


def _control_domain(k: K, m: int, x: int, assign: bool) -> None:
    """Update locks; set/clear the adm bit (no reservation or sharing check for control domains);
    vfio_ap_mdev_filter_cdoms (assign) or the hunk ``unassign_control_domain_store:shadow`` (unassign); if the
    shadow changed and a guest is attached: vfio_ap_mdev_update_guest_apcb."""
    w = k.w
    fn = f"{'' if assign else 'un'}assign_control_domain_store"
    mk = w.mkvm[m].var
    k.call("get_update_locks_for_mdev", fn=fn, mk=mk)
    b = Body()
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    f = w.adm[m]
    done = k.call("store:bypass", b=b, f=f, x=x, assign=assign)
    go = None if done is None else Not(done)
    b.set(f, b[f].with_bit(x) if assign else b[f].without_bit(x), when=go)
    if assign:
        changed, what = w.filter_cdoms(b, m, when=go), "set adm bit; shadow adm = adm & host config"
    else:
        changed, what = k.call("unassign_control_domain_store:shadow", b=b, m=m, x=x, when=go)
    w.set_masks(b, mk, b[w.sapm[m]], b[w.saqm[m]], m, when=And(changed, mk != -1))
    k.ret(b, 0)
    k.unlock(fn, *k.call("release_update_locks_for_mdev", mk=mk), body=b,
             text=f"{what}; if changed: update_guest_apcb; unlock",
             branches=[*([(done, f"control domain {'already' if assign else 'not'} assigned: {BYPASSED}")]
                         if done is not None else []),
                       (go, what), (And(go, Not(changed)) if go is not None else Not(changed), "shadow unchanged"),
                       (And(changed, mk == -1), "no guest"),
                       (And(changed, mk != -1), "vfio_ap_mdev_update_guest_apcb"),
                       (None, "release_update_locks_for_mdev")])


@kernel(OPS)
def assign_control_domain_store(k: K, mdev: int, apqi: int) -> None:
    """Assign a control domain (hot plugged into a running guest)."""
    _control_domain(k, mdev, apqi, True)


@kernel(OPS)
def unassign_control_domain_store(k: K, mdev: int, apqi: int) -> None:
    """Unassign a control domain (hot unplugged from a running guest)."""
    _control_domain(k, mdev, apqi, False)


@kernel(OPS)
def vfio_ap_mdev_filter_matrix(k: K, b: Body, m: int, when: Expr | None = None) -> Expr:
    """vfio_ap_mdev_filter_matrix -> shadow; if changed and attached: vfio_ap_mdev_update_guest_apcb;
    reset the queues of APIDs filtered out (f848cba767e5, 2024). Returns "the shadow changed"."""
    return refresh(k.w, b, m, when=when, reset_filtered=True)[0]
