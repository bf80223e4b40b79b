"""The design base class: constants, the operation catalogue, build(), and paths every era shares.

A design (``ap_model/<era>.py``) subclasses ``ApDesign``, sets its ``Era`` and
the operations it models, and writes each kernel path as a method
``op_<operation>(w, t, **args)`` emitting steps on thread ``t`` of world ``w``.
A variant subclasses a design and overrides a few methods (see
``v17_data_before_put.py``).
"""

from __future__ import annotations

from typing import Any

from checker.lang.design import OperationSig, Param, Scenario, ScenarioError
from checker.lang.expr import INT, And, Expr, If, MaskConst, Not, lift
from checker.lang.program import Member, Program, ProgramBuilder, RwSem, ThreadBuilder

from . import rules
from .world import Body, E, Era, World, parse_cfg

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
    "set_apie": "KVM_SET_DEVICE_ATTR (KVM_S390_VM_CRYPTO)",
}


class ApDesign:
    """Base of every vfio_ap design."""

    name = ""
    summary = ""
    era: Era
    supported: tuple[str, ...] = ()
    constants = CONSTANTS
    scenario_ops: set[str] = set()

    @property
    def operations(self) -> dict[str, OperationSig]:
        return {n: CATALOG[n] for n in self.supported}

    # ------------------------------------------------------------ build
    def build(self, scenario: Scenario) -> Program:
        cfg = parse_cfg(dict(scenario.constants))
        pb = ProgramBuilder(f"{self.name}:{scenario.name}")
        w = World(pb, cfg, self.era)
        self.scenario_ops = {c.name for ts in scenario.threads for c in ts.run}
        self.declare(w)
        for ti, ts in enumerate(scenario.threads):
            t = pb.thread(ts.name, cyclic=ts.cyclic)
            for oi, call in enumerate(ts.run):
                key = f"threads.{ti}.run.{oi}"
                if call.name not in self.supported:
                    raise ScenarioError(key, f"design {self.name} does not model {call.name!r}; "
                                             f"it models: {', '.join(self.supported)}")
                args = self._args(w, call.name, dict(call.args), key)
                w.begin_op(t)
                w.ops_used.add(call.name)
                with t.op(ENTRY[call.name]):
                    if call.name == "open_device" and args["vm"] in cfg.no_crycb:
                        self.open_without_crycb(w, t, **args)
                    else:
                        getattr(self, "op_" + call.name)(w, t, **args)
            w.end_thread(t)
        self.add_properties(w)
        self.declare_symmetry(w, scenario)
        # engine workaround: RwSem.held_by() creates a thread's reader bit lazily, also after the
        # layout is frozen (offset -1 -> "negative shift count"); create every reader bit now.
        for lk in pb.locks:
            if isinstance(lk, RwSem):
                for ti in range(len(pb.threads)):
                    lk.reader(ti)
        return pb.build()

    def declare(self, w: World) -> None:
        """Design-specific state (e.g. the v17 global hook)."""

    def declare_symmetry(self, w: World, scenario: Scenario) -> None:
        """Symmetry reduction: a vCPU thread (only KVM_RUN, on one vCPU) may be permuted with another,
        with its vcpu->mutex, ECA_APIE bit and ghost/errno fields; the engine keeps the pairs the
        scenario makes interchangeable (checker.search.reduce.symmetry)."""
        members = []
        for ts in scenario.threads:
            vc = {(c.args.get("vm", 0), c.args.get("vcpu", 0)) for c in ts.run if c.name == "kvm_run"}
            if len(vc) == 1 and all(c.name == "kvm_run" for c in ts.run) and ts.name in w.in_pqap:
                (v, c), = vc
                extra = [w.errno[ts.name]] if ts.name in w.errno else []
                members.append(Member([ts.name], [w.eca_apie[v][c], w.in_pqap[ts.name][1], *extra], [w.VM[v][c]]))
        if len(members) > 1 and len({len(m.fields) for m in members}) == 1:
            w.pb.permutable("vcpus", members)

    def add_properties(self, w: World) -> None:
        w.add_properties()

    def _args(self, w: World, op: str, args: dict[str, Any], key: str) -> dict[str, Any]:
        sig = CATALOG[op]
        out: dict[str, Any] = {}
        for pname, p in sig.params.items():
            val = args.get(pname, p.default)
            if val is None and p.required:
                raise ScenarioError(f"{key}.{pname}", f"{op} needs {pname}")
            k = f"{key}.{pname}"
            if pname == "vm" and not 0 <= val < w.cfg.vms:
                raise ScenarioError(k, f"VM {val} outside 0..{w.cfg.vms - 1} (constants.vms)")
            if pname == "vcpu" and not 0 <= val < w.cfg.vcpus:
                raise ScenarioError(k, f"vCPU {val} outside 0..{w.cfg.vcpus - 1} (constants.vcpus)")
            if pname == "mdev" and not 0 <= val < w.cfg.mdevs:
                raise ScenarioError(k, f"mdev {val} outside 0..{w.cfg.mdevs - 1} (constants.mdevs)")
            if pname == "apid":
                val = _idx(w.cfg.adapters, val, k, "adapter")
            if pname == "apqi":
                val = _idx(w.cfg.domains, val, k, "domain")
            if pname in ("reserve", "release"):
                vals, what = (w.cfg.adapters, "adapter") if op == "apmask_store" else (w.cfg.domains, "domain")
                val = [_idx(vals, x, f"{k}.{n}", what) for n, x in enumerate(val or [])]
            out[pname] = val
        return out

    # ------------------------------------------------------------ KVM paths shared by every era
    def op_kvm_run(self, w: World, t: ThreadBuilder, vm: int, vcpu: int) -> None:
        """KVM_RUN; the guest's PQAP(AQIC) is intercepted; priv.c ``handle_pqap`` first checks
        ``vcpu->arch.sie_block->eca & ECA_APIE`` (every era since v5.3) and returns -EOPNOTSUPP to
        QEMU when APIE is off. The ECA read is folded into the vcpu->mutex step: nothing between
        that step and the hook's first step touches kvm->lock or ECA, so the interleavings are the same."""
        b = Body()
        w.use_kvm(b, vm, "vcpu->kvm")
        apie = w.eca_apie[vm][vcpu].var
        ret_lab = None
        if vm not in w.cfg.apie_off and w.cfg.ap_instructions and "set_apie" not in self.scenario_ops:
            w.lock(t, w.VM[vm][vcpu], "kvm_vcpu_ioctl", body=b)  # APIE on for the whole run
        else:
            ret_lab = w.label(t, "kvm_run_return")
            w.set_ret(b, t, If(apie, 0, E["EOPNOTSUPP"]))
            w.step(t, "kvm_vcpu_ioctl", "mutex_lock(vcpu->mutex); KVM_RUN; PQAP intercept -> priv.c handle_pqap: "
                                        "if (!(sie_block->eca & ECA_APIE)) return -EOPNOTSUPP",
                   body=b, acquire=[(w.VM[vm][vcpu], None, None, "w")], jumps=[(Not(apie), ret_lab)])
        self.pqap(w, t, vm)
        if ret_lab is not None:
            t.label(ret_lab)
        w.unlock(t, "kvm_vcpu_ioctl", (w.VM[vm][vcpu], None, None),
                 text="KVM_RUN returns to QEMU: mutex_unlock(vcpu->mutex)")

    def op_set_apie(self, w: World, t: ThreadBuilder, vm: int, on: bool) -> None:
        """kvm_s390_vm_set_crypto (KVM_S390_VM_CRYPTO_ENABLE_APIE / DISABLE_APIE) under kvm->lock:
        ``kvm->arch.crypto.apie = on`` then kvm_s390_vcpu_crypto_reset_all: kvm_s390_vcpu_block_all
        (kicks each vCPU out of SIE, takes no vcpu->mutex), kvm_s390_vcpu_crypto_setup rewrites each
        vCPU's ECA_APIE, KVM_REQ_VSIE_RESTART, kvm_s390_vcpu_unblock_all. ENABLE_APIE fails with
        -EOPNOTSUPP without AP instructions (constant ``ap_instructions``). One step under kvm->lock."""
        w.lock(t, w.KL, "kvm_s390_vm_set_crypto", index=vm, kvm_index=vm)
        b = Body()
        if on and not w.cfg.ap_instructions:
            w.set_ret(b, t, "EOPNOTSUPP")
            w.unlock(t, "kvm_s390_vm_set_crypto", (w.KL, None, vm), body=b,
                     text="ENABLE_APIE: !ap_instructions_available(): -EOPNOTSUPP; mutex_unlock(kvm->lock)")
            return
        b.set(w.apie[vm], on)
        for c in range(w.cfg.vcpus):
            b.set(w.eca_apie[vm][c], on)
        w.set_ret(b, t, 0)
        w.unlock(t, "kvm_s390_vcpu_crypto_reset_all", (w.KL, None, vm), body=b,
                 text=f"kvm->arch.crypto.apie = {int(on)}; kvm_s390_vcpu_block_all; kvm_s390_vcpu_crypto_setup "
                      "(ECA_APIE) per vCPU; VSIE restart; kvm_s390_vcpu_unblock_all; mutex_unlock(kvm->lock)")

    def pqap(self, w: World, t: ThreadBuilder, v: int) -> None:
        raise NotImplementedError

    def open_without_crycb(self, w: World, t: ThreadBuilder, mdev: int, vm: int) -> None:
        """``if (kvm->arch.crypto.crycbd)`` is false: set_kvm sets nothing (no hook, no kvm, no masks) and
        returns 0 in every modelled era (the v4.20 open callback failed instead, [S-v10])."""
        b = Body()
        w.use_mdev(b, mdev, "matrix_mdev (open_device)")
        b.set(w.vopen[mdev], True)
        w.set_ret(b, t, 0)
        w.step(t, "vfio_ap_mdev_set_kvm", "kvm->arch.crypto.crycbd == 0: nothing to set up", body=b)

    def op_pv_switch(self, w: World, t: ThreadBuilder, vm: int) -> None:
        w.lock(t, w.KL, "kvm_s390_handle_pv", index=vm, kvm_index=vm)
        for c in range(w.cfg.vcpus):
            w.lock(t, w.VM[vm][c], "kvm_s390_cpus_to_pv")
            w.unlock(t, "kvm_s390_cpus_to_pv", (w.VM[vm][c], None, None),
                     text="kvm_s390_pv_create_cpu; mutex_unlock(vcpu->mutex)")
        w.unlock(t, "kvm_s390_handle_pv", (w.KL, None, vm))

    def op_close_vm_fd(self, w: World, t: ThreadBuilder, vm: int) -> None:
        b = Body()
        w.put_kvm(b, vm)
        w.step(t, "kvm_vm_release", "kvm_put_kvm (VM fd)", body=b)

    def op_close_vcpu_fd(self, w: World, t: ThreadBuilder, vm: int, vcpu: int) -> None:
        b = Body()
        w.put_kvm(b, vm)
        w.step(t, "kvm_vcpu_release", f"kvm_put_kvm (vCPU {vcpu} fd)", body=b)

    def op_vfio_ap_init(self, w: World, t: ThreadBuilder) -> None:
        """modprobe vfio_ap (vfio_ap_init): without AP instructions -ENODEV and nothing is registered
        (decision of the v10 review, [S-v10]); else vfio_ap_matrix_dev_create, ap_driver_register,
        mdev_register_device/parent (vfio_ap_mdev_register). Pre-v17 eras register no PQAP hook at
        load: the hook is per mdev (v15/v16) or per KVM (v16-hook, final) and set in set_kvm."""
        b = Body()
        if not w.cfg.ap_instructions:
            w.set_ret(b, t, "ENODEV")
            w.step(t, "vfio_ap_init", "!ap_instructions_available(): -ENODEV (nothing registered)", body=b)
            return
        b.set(w.loaded, True)
        w.set_ret(b, t, 0)
        w.step(t, "vfio_ap_init", "vfio_ap_matrix_dev_create; ap_driver_register; vfio_ap_mdev_register "
                                  "(mdev parent)", body=b)

    def op_mdev_create(self, w: World, t: ThreadBuilder, mdev: int) -> None:
        if not w.cfg.module_loaded:  # the mdev parent exists only once vfio_ap_init succeeded
            ok, end = w.loaded.var, w.end_label(t)
            b = Body()
            w.set_ret(b, t, If(ok, 0, E["ENODEV"]))
            w.lock(t, w.M, "vfio_ap_mdev_probe", when=ok, body=b, jumps=[(Not(ok), end)])
        else:
            w.lock(t, w.M, "vfio_ap_mdev_probe")
        b = Body()
        upd, chk = w.pb.alloc(w.mdev, mdev)
        b.upd.update(upd)
        b.checks.extend(chk)
        w.set_ret(b, t, "0")
        w.unlock(t, "vfio_ap_mdev_probe", (w.M, None, None), body=b,
                 text="kzalloc matrix_mdev; list_add(mdev_list); mutex_unlock")


def _idx(values: list[int], v: int, key: str, what: str) -> int:
    if v not in values:
        raise ScenarioError(key, f"{what} {v} is not modelled (constants: {values})")
    return values.index(v)


# ---------------------------------------------------------------- dynamic-era bodies


def errno_of(err: Expr) -> Expr:
    """rules' Linux errno values -> the model's ret enum."""
    return If(err == rules.EADDRNOTAVAIL, E["EADDRNOTAVAIL"],
              If(err == rules.EADDRINUSE, E["EADDRINUSE"], If(err == rules.ENODEV, E["ENODEV"], E["0"])))


def assign_body(w: World, b: Body, t: ThreadBuilder, m: int, kind: str, x: int) -> Expr:
    """Set the bit, validate (reserved -> EADDRNOTAVAIL, sharing -> EADDRINUSE), revert on error.

    Returns "assignment done" (the bit is now set). Linking queues is derived
    (a queue is linked iff bound to vfio_ap and in the matrix)."""
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    others = [o for o in w.mdevs if o != m]
    zero_a, zero_q = MaskConst(w.nA), MaskConst(w.nD)
    oapm = [If(w.mdev_alive(o), b[w.apm[o]], zero_a) for o in others]
    oaqm = [If(w.mdev_alive(o), b[w.aqm[o]], zero_q) for o in others]
    fn = rules.assign_adapter if kind == "adapter" else rules.assign_domain
    mine, other = (w.apm[m], w.aqm[m]) if kind == "adapter" else (w.aqm[m], w.apm[m])
    apm, aqm = b[w.apm[m]], b[w.aqm[m]]
    new, err = fn(apm, aqm, x, b[w.apmask], b[w.aqmask], oapm, oaqm)
    b.set(mine, new)
    f = w.ret(t)
    if f is not None:
        b.set(f, errno_of(err))
    del other
    return err == 0


def _and(*xs: Expr | None) -> Expr:
    return And(*[x for x in xs if x is not None])


def refresh(w: World, b: Body, m: int, when: Expr | None = None, apply: bool = True,
            reset_filtered: bool = True) -> tuple[Expr, Expr, Expr]:
    """vfio_ap_mdev_filter_matrix -> shadow; if changed and attached: kvm_arch_crypto_set_masks;
    reset the queues of APIDs filtered out (f848cba767e5). Returns (changed, shadow_apm, shadow_aqm)."""
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    na, nq = w.filter(b, m)
    b.set(w.sapm[m], na, when=when)
    b.set(w.saqm[m], nq, when=when)
    changed = _and(when, Not(And(na == old_a, nq == old_q)))
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, na, nq, m, when=And(changed, mk != -1))
    if reset_filtered:
        w.reset_mdev_queues(b, m, rows=old_a & ~na, cols=old_q, when=_and(when, mk != -1))
    return changed, na, nq


def unplug_adapter(w: World, b: Body, m: int, x: int, when: Expr | None = None, apply: bool = True,
                   reset: bool = True) -> Expr:
    """Clear APID ``x`` from the shadow (if there) and update the guest; reset the unplugged queues."""
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    was = _and(when, old_a.has(x))
    b.set(w.sapm[m], old_a.without_bit(x), when=when)
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, b[w.sapm[m]], old_q, m, when=And(was, mk != -1))
    if reset:
        w.reset_mdev_queues(b, m, rows=MaskConst(w.nA, [x]), cols=old_q, when=was)
    return was


def unplug_domain(w: World, b: Body, m: int, x: int, when: Expr | None = None, apply: bool = True,
                  reset: bool = True) -> Expr:
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    was = _and(when, old_q.has(x))
    b.set(w.saqm[m], old_q.without_bit(x), when=when)
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, old_a, b[w.saqm[m]], m, when=And(was, mk != -1))
    if reset:
        w.reset_mdev_queues(b, m, rows=old_a, cols=MaskConst(w.nD, [x]), when=was)
    return was


def attached_kvm(w: World, m: int) -> Expr:
    return w.mkvm[m].var


def lift_int(x: int) -> Expr:
    return lift(x, INT)
