"""A proposed fix for the stale hook after -EPERM (kernel-facts §5 C1), as a plugin design.

One named hunk of ``vfio_ap_mdev_set_kvm`` -- its -EPERM path, empty in 6.8 -- now clears the hook if it
still names this mdev. Everything else is 6.8's table.
"""

from __future__ import annotations

from ap_model.eras.linux_6_8 import LINUX_6_8
from ap_model.kernel.vfio_ap_ops import OPS
from ap_model.kfunc import K, KernelDesign, kernel
from ap_model.world import Body


@kernel(OPS, name="vfio_ap_mdev_set_kvm:error")
def clear_own_hook(k: K, mdev: int, vm: int) -> None:
    """-EPERM: down_write(pqap_hook_rwsem); if (pqap_hook == &matrix_mdev->pqap_hook) pqap_hook = NULL."""
    w = k.w
    k.lock(w.HR, "vfio_ap_mdev_set_kvm", index=vm, kvm_index=vm)
    b = Body()
    b.set(w.hook[vm], -1, when=w.hook[vm].var == mdev)
    k.unlock("vfio_ap_mdev_set_kvm", (w.HR, None, vm), body=b,
             text="-EPERM: if (pqap_hook == &matrix_mdev->pqap_hook) pqap_hook = NULL; up_write")


def design() -> KernelDesign:
    """The entry point: a zero-argument factory returning the design."""
    return LINUX_6_8.derive("eperm-fix", "6.8 with the hook cleared on the -EPERM path of vfio_ap_mdev_set_kvm",
                            override=[clear_own_hook])
