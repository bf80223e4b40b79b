"""The design base class: constants, the operation catalogue, build(), and paths every era shares.

A design (``ap_model/<era>.py``) subclasses ``ApDesign``, sets its ``Era`` and
the operations it models, and writes each kernel path as a method
``op_<operation>(w, t, **args)`` emitting steps on thread ``t`` of world ``w``.
A variant subclasses a design and overrides a few methods (see
``v17_data_before_put.py``).
"""

from __future__ import annotations

from typing import Any

from checker.lang.design import OperationSig, Scenario, ScenarioError
from checker.lang.expr import If, Not
from checker.lang.program import Program, ProgramBuilder, RwSem, ThreadBuilder

from .kernel.catalog import CATALOG, CONSTANTS, ENTRY
from .world import Body, E, Era, World, parse_cfg


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
        # engine workaround: RwSem.held_by() creates a thread's reader bit lazily, also after the
        # layout is frozen (offset -1 -> "negative shift count"); create every reader bit now.
        for lk in pb.locks:
            if isinstance(lk, RwSem):
                for ti in range(len(pb.threads)):
                    lk.reader(ti)
        return pb.build()

    def declare(self, w: World) -> None:
        """Design-specific state (e.g. the v17 global hook)."""

    def add_properties(self, w: World) -> None:
        w.add_properties()

    def _args(self, w: World, op: str, args: dict[str, Any], key: str) -> dict[str, Any]:
        from .kfunc import check_args

        return check_args(w, CATALOG[op], args, key)

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


from .kernel.bodies import _and, assign_body, errno_of, refresh, unplug_adapter, unplug_domain  # noqa: E402

__all__ = ["ApDesign", "CATALOG", "CONSTANTS", "ENTRY", "_and", "assign_body", "errno_of", "refresh",
           "unplug_adapter", "unplug_domain"]
