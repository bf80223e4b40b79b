"""Design ``6.8`` (alias ``final``): upstream vfio_ap as released in v6.8 and the stable trees of 2024-2025.

The full table of kernel functions (ap_model/kernel/): the dynamic configuration series (v6.0), the vfio
core's own kvm reference (2b48f52f2bff, v6.2) and the January 2024 filtering and reset fixes
(f848cba767e5, f009cfa46655, b9bd10c43456, 850fb7fa8c68, 774d10196e64). It has the bugs the 2026 fixes
address (kernel-facts §5): the hook left set on a failed attach (C1). docs/designs/6.8.md.
"""

from __future__ import annotations

from ..kernel import ap_bus, kvm, vfio_ap_ops
from ..kernel.catalog import CONSTANTS, operations
from ..kfunc import KernelDesign, collect
from ..world import Era

DYNAMIC_OPS = ("kvm_run", "pv_switch", "close_vm_fd", "close_vcpu_fd", "open_device", "close_device",
               "mdev_create", "mdev_remove", "assign_adapter", "unassign_adapter", "assign_domain",
               "unassign_domain", "apmask_store", "aqmask_store", "unbind_queue", "adapter_standby",
               "adapter_online", "set_apie", "vfio_ap_init", "assign_control_domain", "unassign_control_domain")

ERA = Era(dynamic=True, hook="rwsem", busy=False, matrix_lock="matrix_dev->mdevs_lock", guests_lock="mutex",
          vfio_lock=True, vfio_kvm_ref=True)

LINUX_6_8 = KernelDesign(
    "6.8",
    "upstream vfio_ap v6.8 (+2024/25 stable): guests_lock -> kvm->lock -> mdevs_lock, per-KVM pqap_hook_rwsem, "
    "shadow APCB filtering, in_use, vfio core kvm ref, Jan 2024 filtering/reset fixes",
    ERA, collect(kvm, vfio_ap_ops, ap_bus), operations(*DYNAMIC_OPS), CONSTANTS,
    commits=("2b48f52f2bff", "f848cba767e5", "f009cfa46655", "b9bd10c43456", "850fb7fa8c68", "774d10196e64"),
    doc="docs/designs/6.8.md")

FINAL = LINUX_6_8.alias("final")
