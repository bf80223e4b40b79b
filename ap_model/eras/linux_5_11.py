"""Designs ``5.11`` and ``5.10``: vfio_ap before the kvm_busy lock (kernel-facts §2(a0), (a1)).

``5.10`` (a0, v5.3 - v5.10): the group notifier's SET_KVM(kvm) runs set_kvm under matrix_dev->lock (other mdev
has this kvm -> -EPERM; kvm_get_kvm; matrix_mdev->kvm; hook) and sets the masks after dropping it
(``kvm_arch_crypto_set_masks`` takes kvm->lock itself); SET_KVM(NULL) only writes ``matrix_mdev->kvm = NULL``
(no lock, no put, hook and masks left); the release, under matrix_dev->lock: if kvm: clear the masks (kvm->lock
inside), hook = NULL, reset, kvm_put_kvm, kvm = NULL.

``5.11`` (a1): f21916ec4826 "clean up vfio_ap resources when KVM pointer invalidated": SET_KVM(NULL) does the
full unset under matrix_dev->lock, and SET_KVM(kvm) sets the masks still holding it (matrix_dev->lock ->
kvm->lock on every guest start -- the edge 0cc00c8d4050 removes in 5.12).

Both: priv.c calls the unlocked per-mdev hook (5.12's); vfio_ap's handle_pqap takes matrix_dev->lock, tests
the hook and uses container_of (no kvm test: 0cc00c8d4050 added it). Not modelled: the stores' and remove's
unlocked read of matrix_mdev->kvm before matrix_dev->lock (5.12's check under the lock is used). Derived from
5.12. docs/designs/5.11.md.
"""

from __future__ import annotations

from checker.lang.expr import Not

from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Body, Era
from .linux_5_12 import LINUX_5_12, VFIO_MDEV, notifier_entry
from .linux_5_15 import SWALLOWED


@kernel(OPS, name="vfio_ap_ops.handle_pqap")
def vfio_ap_handle_pqap_a0(k: K, v: int, skip: str) -> None:
    """matrix_dev->lock { if (!pqap_hook) goto out; matrix_mdev = container_of(pqap_hook); find the queue;
    AQIC with q->matrix_mdev->kvm } (priv.c tested the hook before the call: ``skip`` is "")."""
    w = k.w
    hook = w.hook[v].var
    k.lock(w.M, "handle_pqap")
    b = Body()
    w.hook_target_freed(b, hook, when=hook != -1)
    w.use_mdev(b, hook, "matrix_mdev = container_of(pqap_hook)", when=hook != -1)
    w.hook_target_detached(b, v, hook, when=hook != -1)
    k.unlock("handle_pqap", (w.M, None, None), body=b,
             text="vfio_ap: if (!pqap_hook) goto out; matrix_mdev = container_of(pqap_hook); AQIC; unlock",
             branches=[(hook == -1, "vfio_ap: !pqap_hook: goto out_unlock"),
                       (hook != -1, "vfio_ap: matrix_mdev = container_of(pqap_hook); AQIC"), (None, "unlock")])


def _set_kvm(k: K, m: int, vm: int, masks_under_lock: bool) -> None:
    """The group notifier's SET_KVM(kvm) at open (replayed only if group->kvm is set)."""
    w, end = k.w, k.end()
    entry = notifier_entry(k, m, vm)
    if entry is None:
        return
    no_kvm, b, other = entry
    eperm = k.label("open_eperm")
    ok = Not(other)
    w.get_kvm(b, vm, when=ok)
    b.set(w.mkvm[m], vm, when=ok)
    b.set(w.hook[vm], m, when=ok)
    k.ret(b, 0)
    apm, aqm = w.guest_masks(m)
    if masks_under_lock:  # 5.11: set_masks (kvm->lock inside) with matrix_dev->lock held, both dropped together
        k.step("vfio_ap_mdev_set_kvm", "other mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                                       "pqap_hook = &matrix_mdev->pqap_hook", body=b, jumps=[(other, eperm)],
               branches=[(other, f"another mdev has this kvm: {SWALLOWED}"),
                         (ok, "kvm_get_kvm; matrix_mdev->kvm = kvm; pqap_hook = &matrix_mdev->pqap_hook")])
        k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_set_kvm", kv=vm, apm=apm, aqm=aqm, src=m,
               release_m=True)
    else:  # 5.10: unlock, then set the masks
        k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), body=b, jumps=[(other, end)],
                 text="other mdev has this kvm: -EPERM; kvm_get_kvm; matrix_mdev->kvm = kvm; "
                      "pqap_hook = &matrix_mdev->pqap_hook; mutex_unlock",
                 branches=[(other, f"another mdev has this kvm: {SWALLOWED}"),
                           (ok, "kvm_get_kvm; matrix_mdev->kvm = kvm; pqap_hook = &matrix_mdev->pqap_hook"),
                           (None, "mutex_unlock")])
        k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_set_kvm", kv=vm, apm=apm, aqm=aqm, src=m,
               release_m=False)
    k.goto(end)
    if masks_under_lock:
        k.at(eperm)
        k.unlock("vfio_ap_mdev_set_kvm", (w.M, None, None), text="-EPERM (ignored): mutex_unlock", goto=end)
    k.at(no_kvm)
    b = Body()
    k.ret(b, 0)
    k.step("vfio_ap_mdev_open", "group->kvm == NULL: no SET_KVM replayed; open returns 0", body=b)


def _unset_a1(k: K, m: int, fn: str, release: bool) -> None:
    """matrix_dev->lock { if (matrix_mdev->kvm) { kvm_arch_crypto_clear_masks (kvm->lock inside);
    pqap_hook = NULL; reset the queues; kvm_put_kvm; matrix_mdev->kvm = NULL } } (``release``: then the
    device closes)."""
    w = k.w
    lk = k.local("kvm", w.kslots)
    done = k.label("unset_done")
    k.lock(w.M, fn)
    b = Body()
    b.set(lk, w.mkvm[m].var)
    k.step(fn, "if (!matrix_mdev->kvm) skip", body=b, jumps=[(w.mkvm[m].var == -1, done)],
           branches=[(w.mkvm[m].var == -1, "matrix_mdev->kvm == NULL: nothing to detach"),
                     (w.mkvm[m].var != -1, "matrix_mdev->kvm set: detach it")])
    kv = lk.var
    k.call("kvm_arch_crypto_set_masks", fn="vfio_ap_mdev_unset_kvm", kv=kv, apm=None, aqm=None, src=None,
           release_m=False, clear=True)
    b = Body()
    w.reset_mdev_queues(b, m)
    b.set_at(w.hook, kv, -1)
    w.put_kvm(b, kv)
    b.set(w.mkvm[m], -1)
    k.step("vfio_ap_mdev_unset_kvm", "pqap_hook = NULL; vfio_ap_mdev_reset_queues; kvm_put_kvm; "
                                     "matrix_mdev->kvm = NULL", body=b)
    k.at(done)
    b = Body()
    if release:  # vfio_device_fops_release: ops->release, then vfio_device_put (the fd's reference)
        w.vfio_users(b, m, -1, when=b[w.vopen[m]] > 0)
    b.set(lk, -1)
    k.ret(b, 0)
    k.unlock(fn, (w.M, None, None), body=b, text="mutex_unlock(matrix_dev->lock)")


@kernel(VFIO_MDEV, name="vfio_device_open")
def open_a1(k: K, mdev: int, vm: int) -> None:
    """5.11: SET_KVM(kvm) entirely under matrix_dev->lock (the masks too: matrix_dev->lock -> kvm->lock)."""
    _set_kvm(k, mdev, vm, masks_under_lock=True)


@kernel(VFIO_MDEV, name="vfio_device_open")
def open_a0(k: K, mdev: int, vm: int) -> None:
    """5.10: set_kvm under matrix_dev->lock, the masks after it is dropped."""
    _set_kvm(k, mdev, vm, masks_under_lock=False)


@kernel(VFIO_MDEV, name="vfio_device_close")
def release_a1(k: K, mdev: int) -> None:
    """vfio_ap_mdev_release: vfio_ap_mdev_unset_kvm under matrix_dev->lock; unregister the notifiers."""
    _unset_a1(k, mdev, "vfio_ap_mdev_release", release=True)


@kernel("virt/kvm/vfio.c", name="kvm_vfio_group_del")
def group_del_a1(k: K, vm: int, mdev: int) -> None:
    """KVM_DEV_VFIO_GROUP_DEL -> SET_KVM(NULL) -> vfio_ap_mdev_unset_kvm under matrix_dev->lock (f21916ec4826)."""
    w = k.w
    k.step("kvm_vfio_group_set_kvm", f"vfio_group_set_kvm(group of mdev{mdev}, NULL): SET_KVM(NULL)",
           jumps=[(w.mkvm[mdev].var != vm, k.end())])
    _unset_a1(k, mdev, "vfio_ap_mdev_group_notifier", release=False)


@kernel("virt/kvm/vfio.c", name="kvm_vfio_group_del")
def group_del_a0(k: K, vm: int, mdev: int) -> None:
    """KVM_DEV_VFIO_GROUP_DEL -> SET_KVM(NULL): ``matrix_mdev->kvm = NULL`` only -- no lock, no kvm_put_kvm, the
    hook and the CRYCB masks left, and the later release finds no kvm (so no reset)."""
    w = k.w
    b = Body()
    b.set(w.mkvm[mdev], -1, when=w.mkvm[mdev].var == vm)
    k.step("vfio_ap_mdev_group_notifier", "SET_KVM(NULL): matrix_mdev->kvm = NULL", body=b)


ERA = Era(dynamic=False, hook="module", busy=False, matrix_lock="matrix_dev->lock", guests_lock="",
          vfio_lock=False, vfio_kvm_ref=False)

LINUX_5_11 = LINUX_5_12.derive(
    "5.11",
    "v5.11: group notifier SET_KVM under matrix_dev->lock incl. the masks (matrix_dev->lock -> kvm->lock), "
    "SET_KVM(NULL) does the full unset (f21916ec4826); unlocked per-mdev hook; pre-dynamic",
    era=ERA, override=[vfio_ap_handle_pqap_a0, open_a1, release_a1, group_del_a1],
    commits=("f21916ec4826",), doc="docs/designs/5.11.md")

LINUX_5_10 = LINUX_5_11.derive(
    "5.10",
    "v5.3-v5.10: set_kvm under matrix_dev->lock, masks set after it; SET_KVM(NULL) only clears matrix_mdev->kvm "
    "(no put, hook and masks left); unlocked per-mdev hook; pre-dynamic",
    override=[open_a0, group_del_a0], doc="docs/designs/5.11.md")

