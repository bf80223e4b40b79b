"""The operations a spec may run (today's names and parameters) and the constants a vfio_ap spec accepts.

Each operation enters one kernel function of the design's table (``FUNCTION``); the entry label is the
kernel entry point shown in traces.
"""

from __future__ import annotations

from checker.lang.design import OperationSig, Param

from ..kfunc import Operation

CONSTANTS: dict[str, Param] = {
    "adapters": Param("ints", "APIDs modelled (real numbers, shown in traces)", [3, 4]),
    "domains": Param("ints", "APQIs modelled", [5, 6]),
    "vms": Param("int", "number of VMs (struct kvm kvm0..); each alive at start, its VM fd open", 1),
    "vcpus": Param("int", "vCPUs per VM (each holds a kvm reference through its fd)", 1),
    "mdevs": Param("int", "matrix_mdev slots mdev0..", 1),
    "created": Param("ints", "mdevs created at start (default: all)", None),
    "matrix": Param("strs", "initial assignments, e.g. 'mdev0: 3,4 x 5' (adapters x domains)", []),
    "attached": Param("strs", "mdevs open with a running guest at start, e.g. 'mdev0 -> kvm0'", []),
    "apmask": Param("ints", "APIDs set in /sys/bus/ap/apmask at start (default none)", None),
    "aqmask": Param("ints", "APQIs set in /sys/bus/ap/aqmask at start (default all)", None),
    "config_apm": Param("ints", "APIDs in the host AP configuration (QCI) at start (default all)", None),
    "config_aqm": Param("ints", "APQIs in the host AP configuration at start (default all)", None),
    "module_loaded": Param("bool", "vfio_ap module loaded at start", True),
    "no_crycb": Param("ints", "VMs created without a CRYCB (kvm->arch.crypto.crycbd == 0)", []),
    "ap_instructions": Param("bool", "AP instructions available (else vfio_ap_init fails -ENODEV)", True),
    "apie_off": Param("ints", "VMs started with APIE off (kvm->arch.crypto.apie == 0, no ECA_APIE)", []),
    "track_errno": Param("bool", "record each thread's last return code in the state (traces show it)", True),
}

_MDEV = Param("int", "mdev index", 0)
_APID = Param("int", "APID", required=True)
_APQI = Param("int", "APQI", required=True)
CATALOG: dict[str, OperationSig] = {
    "kvm_run": OperationSig("kvm_run", "vCPU KVM_RUN ioctl whose guest issues PQAP(AQIC) (intercepted, handle_pqap)",
                            {"vm": Param("int", "VM index", 0), "vcpu": Param("int", "vCPU index", 0)}),
    "pv_switch": OperationSig("pv_switch", "KVM_S390_PV_COMMAND: kvm_s390_handle_pv -> kvm_s390_cpus_to_pv",
                              {"vm": Param("int", "VM index", 0)}),
    "close_vm_fd": OperationSig("close_vm_fd", "QEMU closes the VM fd: kvm_vm_release -> kvm_put_kvm",
                                {"vm": Param("int", "VM index", 0)}),
    "close_vcpu_fd": OperationSig("close_vcpu_fd", "QEMU closes a vCPU fd: kvm_vcpu_release -> kvm_put_kvm",
                                  {"vm": Param("int", "VM index", 0), "vcpu": Param("int", "vCPU index", 0)}),
    "open_device": OperationSig("open_device", "QEMU opens the mdev's vfio device for a VM (-> vfio_ap_mdev_set_kvm)",
                                {"mdev": Param("int", "mdev index", 0), "vm": Param("int", "VM index", 0)}),
    "close_device": OperationSig("close_device", "QEMU closes the mdev's vfio device (-> vfio_ap_mdev_unset_kvm)",
                                 {"mdev": Param("int", "mdev index", 0)}),
    "mdev_create": OperationSig("mdev_create", "echo UUID > .../create: vfio_ap_mdev_probe",
                                {"mdev": Param("int", "mdev index", 0)}),
    "mdev_remove": OperationSig("mdev_remove", "echo 1 > .../remove: vfio_ap_mdev_remove (waits for close)",
                                {"mdev": Param("int", "mdev index", 0)}),
    "assign_adapter": OperationSig("assign_adapter", "echo APID > assign_adapter (assign_adapter_store)",
                                   {"mdev": _MDEV, "apid": _APID}),
    "unassign_adapter": OperationSig("unassign_adapter", "echo APID > unassign_adapter",
                                     {"mdev": _MDEV, "apid": _APID}),
    "assign_domain": OperationSig("assign_domain", "echo APQI > assign_domain",
                                  {"mdev": _MDEV, "apqi": _APQI}),
    "unassign_domain": OperationSig("unassign_domain", "echo APQI > unassign_domain",
                                    {"mdev": _MDEV, "apqi": _APQI}),
    "assign_control_domain": OperationSig("assign_control_domain", "echo APQI > assign_control_domain",
                                          {"mdev": _MDEV, "apqi": _APQI}),
    "unassign_control_domain": OperationSig("unassign_control_domain", "echo APQI > unassign_control_domain",
                                            {"mdev": _MDEV, "apqi": _APQI}),
    "apmask_store": OperationSig("apmask_store", "write /sys/bus/ap/apmask (+reserve / -release), then reprobe",
                                 {"reserve": Param("ints", "APIDs set (given to zcrypt)", []),
                                  "release": Param("ints", "APIDs cleared (given to vfio_ap)", [])}),
    "aqmask_store": OperationSig("aqmask_store", "write /sys/bus/ap/aqmask (+reserve / -release), then reprobe",
                                 {"reserve": Param("ints", "APQIs set (given to zcrypt)", []),
                                  "release": Param("ints", "APQIs cleared (given to vfio_ap)", [])}),
    "unbind_queue": OperationSig("unbind_queue", "echo APQN > /sys/bus/ap/drivers/vfio_ap/unbind",
                                 {"apid": _APID, "apqi": _APQI}),
    "adapter_standby": OperationSig("adapter_standby", "host configuration change: adapter leaves QCI (AP bus scan)",
                                    {"apid": Param("int", "APID", required=True)}),
    "adapter_online": OperationSig("adapter_online", "host configuration change: adapter enters QCI (AP bus scan)",
                                   {"apid": Param("int", "APID", required=True)}),
    "vfio_ap_init": OperationSig("vfio_ap_init", "modprobe vfio_ap (vfio_ap_init)"),
    "vfio_ap_exit": OperationSig("vfio_ap_exit", "rmmod vfio_ap (vfio_ap_exit)"),
    "hook_register_other": OperationSig("hook_register_other",
                                        "a second driver calls kvm_s390_pqap_hook_register (v17)"),
    "kvm_vfio_group_del": OperationSig("kvm_vfio_group_del",
                                       "QEMU removes the mdev's vfio group from the VM's kvm-vfio device "
                                       "(KVM_DEV_VFIO_GROUP_DEL): the group notifier's SET_KVM(NULL) (<= v5.19)",
                                       {"vm": Param("int", "VM index", 0), "mdev": Param("int", "mdev index", 0)}),
    "set_apie": OperationSig("set_apie", "KVM_SET_DEVICE_ATTR KVM_S390_VM_CRYPTO_ENABLE_APIE / DISABLE_APIE "
                                         "(kvm_s390_vm_set_crypto) while the guest runs",
                             {"vm": Param("int", "VM index", 0),
                              "on": Param("bool", "ENABLE_APIE (true) or DISABLE_APIE (false)", True)}),
}

# the kernel entry point each operation runs in (shown in traces)
ENTRY = {
    "kvm_run": "KVM_RUN", "pv_switch": "KVM_S390_PV_COMMAND", "close_vm_fd": "close(vm fd)",
    "close_vcpu_fd": "close(vcpu fd)", "open_device": "open(vfio device)", "close_device": "close(vfio device)",
    "mdev_create": "mdev create", "mdev_remove": "mdev remove", "assign_adapter": "assign_adapter_store",
    "unassign_adapter": "unassign_adapter_store", "assign_domain": "assign_domain_store",
    "unassign_domain": "unassign_domain_store", "apmask_store": "apmask_store",
    "aqmask_store": "aqmask_store", "unbind_queue": "driver unbind",
    "adapter_standby": "ap_scan_bus (config off)", "adapter_online": "ap_scan_bus (config on)",
    "vfio_ap_init": "module init", "vfio_ap_exit": "module exit", "hook_register_other": "other module init",
    "set_apie": "KVM_SET_DEVICE_ATTR (KVM_S390_VM_CRYPTO)", "kvm_vfio_group_del": "KVM_DEV_VFIO_GROUP_DEL",
    "assign_control_domain": "assign_control_domain_store", "unassign_control_domain": "unassign_control_domain_store",
}


# the kernel function (table entry) each operation enters
FUNCTION = {
    "kvm_run": "kvm_vcpu_ioctl", "pv_switch": "kvm_s390_handle_pv", "close_vm_fd": "kvm_vm_release",
    "close_vcpu_fd": "kvm_vcpu_release", "open_device": "vfio_device_open", "close_device": "vfio_device_close",
    "mdev_create": "vfio_ap_mdev_probe", "mdev_remove": "vfio_ap_mdev_remove",
    "assign_adapter": "assign_adapter_store", "unassign_adapter": "unassign_adapter_store",
    "assign_domain": "assign_domain_store", "unassign_domain": "unassign_domain_store",
    "apmask_store": "apmask_store", "aqmask_store": "aqmask_store", "unbind_queue": "unbind_store",
    "adapter_standby": "ap_scan_bus:adapter_removed", "adapter_online": "ap_scan_bus:adapter_added",
    "vfio_ap_init": "vfio_ap_init", "vfio_ap_exit": "vfio_ap_exit",
    "hook_register_other": "kvm_s390_pqap_hook_register",
    "set_apie": "kvm_s390_vm_set_crypto", "kvm_vfio_group_del": "kvm_vfio_group_del",
    "assign_control_domain": "assign_control_domain_store",
    "unassign_control_domain": "unassign_control_domain_store",
}


def operations(*names: str) -> dict[str, Operation]:
    """The catalogue entries ``names`` as operations of a design."""
    return {n: Operation(CATALOG[n], ENTRY[n], FUNCTION[n]) for n in names}
