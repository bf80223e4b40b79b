"""Design ``v17-data-before-put``: v17 with ``kvm->arch.crypto.data = NULL`` before ``kvm_put_kvm``.

A variant in the sense of the README: it subclasses ``v17`` and overrides the
single kernel path that changes (``vfio_ap_mdev_unset_kvm``'s tail); every
other operation, lock and property is inherited. It answers Halil's v17 review
question (kernel-facts §2(d)): moving the ``data`` write before the put removes
the write to a possibly freed ``struct kvm`` — but ``mutex_unlock(&kvm->lock)``
still follows the put, so the last-reference case remains a use after free
until the vfio core holds its own kvm reference (6.2, 2b48f52f2bff).
"""

from __future__ import annotations

from checker.lang.expr import Expr
from checker.lang.program import ThreadBuilder

from .v17 import V17Design
from .world import Body, World


class V17DataBeforePut(V17Design):
    name = "v17-data-before-put"
    summary = "v17 with kvm->arch.crypto.data cleared before kvm_put_kvm in vfio_ap_mdev_unset_kvm (variant)"

    def unset_steps(self, w: World, t: ThreadBuilder, m: int, kv: Expr) -> None:
        b = Body()
        w.clear_masks(b, kv)
        w.reset_mdev_queues(b, m)
        b.set_at(w.data, kv, -1)
        w.step(t, "vfio_ap_mdev_unset_kvm", "del ap_guest; kvm_arch_crypto_clear_masks; "
                                            "vfio_ap_mdev_reset_queues; kvm->arch.crypto.data = NULL", body=b)
        b = Body()
        w.put_kvm(b, kv)
        b.set(w.mkvm[m], -1)
        w.set_ret(b, t, 0)
        w.step(t, "vfio_ap_mdev_unset_kvm", "kvm_put_kvm; matrix_mdev->kvm = NULL", body=b)


__all__ = ["V17DataBeforePut"]
