"""KVM-side kernel functions (virt/kvm/kvm_main.c, arch/s390/kvm/{kvm-s390.c,priv.c}), written once.

``handle_pqap`` here is priv.c's intercept handler of v5.15+ (per-KVM hook under
``kvm->arch.crypto.pqap_hook_rwsem``); older and v17 designs override it.
"""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, Not

from ..kfunc import K, kernel
from ..world import VM_FD, Body, E

KVM_MAIN = "virt/kvm/kvm_main.c"
KVM_S390 = "arch/s390/kvm/kvm-s390.c"
PRIV = "arch/s390/kvm/priv.c"


Jumps = list[tuple[Expr, str]]
Shown = list[tuple[Expr | None, str]]


def _fdget(k: K, b: Body, closed: Expr | None, fd: str) -> tuple[Expr | None, Jumps, Shown]:
    """ioctl(2)'s fdget of ``fd`` where the scenario closes it (``closed``: no longer in the fd table): fails
    with -EBADF, straight back to user space, the struct kvm untouched. Returns the condition "the fd is
    open" (None: the scenario never closes it), the jump of the -EBADF path and what a trace shows of it."""
    if closed is None:
        return None, [], []
    k.ret(b, "EBADF", when=closed)
    return Not(closed), [(closed, k.end())], [(closed, f"fdget({fd}): closed: return -EBADF")]


def _vm_ioctl_lock(k: K, vm: int, function: str) -> None:
    """A VM ioctl's first step: ioctl(2)'s fdget of the VM fd (-> kvm_vm_ioctl -> kvm_arch_vm_ioctl), folded
    into ``function``'s mutex_lock(kvm->lock) (an ioctl still waiting for the lock when the fd is closed gets
    -EBADF here, where the kernel's had its file already: a behaviour missed, docs/designs/world.md). Where
    the scenario closes that fd, a successful fdget holds the struct file (QEMU's threads share the fd table,
    so fdget takes a reference): ``kvmV.vm_fd`` is "ioctl" until the return (``_vm_fdput``). At most one VM
    ioctl is in flight per VM in the model: both (set_apie, pv_switch) hold kvm->lock from this step to their
    return, so the one value is exact."""
    w = k.w
    b = Body()
    fd = w.vm_fd.get(vm)
    closed = fd.var == VM_FD.index("closed") if fd is not None else None
    fd_open, badf, shown = _fdget(k, b, closed, "vm fd")
    if fd is not None:
        b.set(fd, VM_FD.index("ioctl"), when=fd_open)
    k.lock(w.KL, function, index=vm, kvm_index=vm, body=b, when=fd_open, jumps=badf,
           branches=[*shown, (fd_open, "{lock}")] if shown else ())


def _vm_fdput(k: K, b: Body, vm: int) -> None:
    """The VM ioctl returns: fdput drops the reference its fdget took (the fd, if still open, keeps the file)."""
    fd = k.w.vm_fd.get(vm)
    if fd is not None:
        b.set(fd, VM_FD.index("open"))


@kernel(KVM_MAIN)
def kvm_vcpu_ioctl(k: K, vm: int, vcpu: int) -> None:
    """KVM_RUN under vcpu->mutex; the guest's PQAP(AQIC) is intercepted: priv.c handle_pqap first checks
    ``vcpu->arch.sie_block->eca & ECA_APIE`` (every era since v5.3) and returns -EOPNOTSUPP to QEMU when
    APIE is off. The ECA read is folded into the vcpu->mutex step: nothing between that step and the
    hook's first step touches kvm->lock or ECA, so the interleavings are the same."""
    w = k.w
    b = Body()
    # where the scenario closes this vCPU's fd, fdget may fail first: -EBADF, straight back to QEMU
    fd = w.vcpu_fd_closed.get((vm, vcpu))
    fd_open, badf, badf_shown = _fdget(k, b, fd.var if fd is not None else None, "vcpu fd")

    def if_open(c: Expr) -> Expr:
        return And(fd_open, c) if fd_open is not None else c

    w.use_kvm(b, vm, "vcpu->kvm", when=fd_open)
    apie = w.eca_apie[vm][vcpu].var
    ret_lab = None
    if vm not in w.cfg.apie_off and w.cfg.ap_instructions and "set_apie" not in w.scenario_ops:
        # APIE on for the whole run
        k.lock(w.VM[vm][vcpu], "kvm_vcpu_ioctl", body=b, when=fd_open, jumps=badf,
               branches=[*badf_shown, (fd_open, "{lock}")] if badf_shown else ())
    else:
        ret_lab = k.label("kvm_run_return")
        k.ret(b, If(apie, 0, E["EOPNOTSUPP"]), when=fd_open)
        k.step("kvm_vcpu_ioctl", "mutex_lock(vcpu->mutex); KVM_RUN; PQAP intercept -> priv.c handle_pqap: "
                                 "if (!(sie_block->eca & ECA_APIE)) return -EOPNOTSUPP",
               body=b, acquire=[(w.VM[vm][vcpu], fd_open, None, "w")], jumps=[*badf, (Not(apie), ret_lab)],
               branches=[*badf_shown,
                         (fd_open, "mutex_lock(vcpu->mutex); KVM_RUN; PQAP intercept -> priv.c handle_pqap"),
                         (if_open(apie), "ECA_APIE set"),
                         (if_open(Not(apie)), "!(sie_block->eca & ECA_APIE): return -EOPNOTSUPP")])
    k.call("handle_pqap", v=vm)
    if ret_lab is not None:
        k.at(ret_lab)
    k.unlock("kvm_vcpu_ioctl", (w.VM[vm][vcpu], None, None), text="KVM_RUN returns to QEMU: mutex_unlock(vcpu->mutex)")


@kernel(PRIV)
def handle_pqap(k: K, v: int) -> None:
    """priv.c (v5.15+): ``down_read(pqap_hook_rwsem)``; if a hook is set call it (vfio_ap's handle_pqap);
    ``up_read``. The NULL test of the hook is folded into the callee's first step."""
    w = k.w
    fl = w.in_pqap_flag(k.t, v)
    b = Body()
    b.set(fl, True)
    k.lock(w.HR, "handle_pqap", index=v, mode="r", body=b, kvm_index=v)
    out = k.label("pqap_out")
    k.call("vfio_ap_ops.handle_pqap", v=v, skip=out)
    b = Body()
    b.set(fl, False)
    k.at(out)
    k.unlock("handle_pqap", (w.HR, None, v, "r"), body=b, text="priv.c: up_read(pqap_hook_rwsem)")


@kernel(KVM_S390)
def kvm_s390_vm_set_crypto(k: K, vm: int, on: bool) -> None:
    """KVM_S390_VM_CRYPTO_ENABLE_APIE / DISABLE_APIE under kvm->lock: ``kvm->arch.crypto.apie = on`` then
    kvm_s390_vcpu_crypto_reset_all: kvm_s390_vcpu_block_all (kicks each vCPU out of SIE, takes no
    vcpu->mutex), kvm_s390_vcpu_crypto_setup rewrites each vCPU's ECA_APIE, KVM_REQ_VSIE_RESTART,
    kvm_s390_vcpu_unblock_all. ENABLE_APIE fails with -EOPNOTSUPP without AP instructions. One step under
    kvm->lock."""
    w = k.w
    _vm_ioctl_lock(k, vm, "kvm_s390_vm_set_crypto")  # KVM_SET_DEVICE_ATTR -> kvm_s390_vm_set_attr -> here
    b = Body()
    _vm_fdput(k, b, vm)
    if on and not w.cfg.ap_instructions:
        k.ret(b, "EOPNOTSUPP")
        k.unlock("kvm_s390_vm_set_crypto", (w.KL, None, vm), body=b,
                 text="ENABLE_APIE: !ap_instructions_available(): -EOPNOTSUPP; mutex_unlock(kvm->lock)")
        return
    b.set(w.apie[vm], on)
    for c in range(w.cfg.vcpus):
        b.set(w.eca_apie[vm][c], on)
    k.ret(b, 0)
    k.unlock("kvm_s390_vcpu_crypto_reset_all", (w.KL, None, vm), body=b,
             text=f"kvm->arch.crypto.apie = {int(on)}; kvm_s390_vcpu_block_all; kvm_s390_vcpu_crypto_setup "
                  "(ECA_APIE) per vCPU; VSIE restart; kvm_s390_vcpu_unblock_all; mutex_unlock(kvm->lock)")


@kernel(KVM_S390)
def kvm_s390_handle_pv(k: K, vm: int) -> None:
    """KVM_S390_PV_COMMAND (kvm_arch_vm_ioctl) under kvm->lock: kvm_s390_cpus_to_pv takes each vCPU's
    vcpu->mutex (KL -> VM)."""
    w = k.w
    _vm_ioctl_lock(k, vm, "kvm_s390_handle_pv")
    for c in range(w.cfg.vcpus):
        k.lock(w.VM[vm][c], "kvm_s390_cpus_to_pv")
        k.unlock("kvm_s390_cpus_to_pv", (w.VM[vm][c], None, None),
                 text="kvm_s390_pv_create_cpu; mutex_unlock(vcpu->mutex)")
    b = Body()
    if vm in w.vm_fd:  # the return value is tracked where an earlier call can have returned -EBADF
        k.ret(b, 0)
    _vm_fdput(k, b, vm)
    k.unlock("kvm_s390_handle_pv", (w.KL, None, vm), body=b)


@kernel(KVM_MAIN)
def kvm_vm_release(k: K, vm: int) -> None:
    """close(vm fd): kvm_put_kvm. The file is released at its last fput, so not while a VM ioctl on it
    (set_apie, pv_switch: ``kvmV.vm_fd`` "ioctl", from its fdget to its return) is in flight; later VM
    ioctls on the fd fail in fdget (-EBADF). (The kernel's close() returns at once and the ioctl's fdput runs
    the release; here the closing thread waits for it: only its own later operations are delayed.)"""
    w = k.w
    b = Body()
    fd = w.vm_fd.get(vm)
    if fd is None:
        w.put_kvm(b, vm)
        k.step("kvm_vm_release", "kvm_put_kvm (VM fd)", body=b)
        return
    _close_or_ebadf(k, b, fd.var == VM_FD.index("closed"), vm)
    b.set(fd, VM_FD.index("closed"))
    k.step("kvm_vm_release", "kvm_put_kvm (VM fd)", body=b, guard=fd.var != VM_FD.index("ioctl"),
           branches=_close_branches(fd.var == VM_FD.index("closed"), "VM fd", "kvm_put_kvm (VM fd)"))


def _close_or_ebadf(k: K, b: Body, closed: Expr, vm: int) -> None:
    """close(2) of an fd the scenario may have closed already: the fd table has no file there, close returns
    -EBADF and no release runs; else the file's last fput runs the release (kvm_put_kvm)."""
    k.w.put_kvm(b, vm, when=Not(closed))
    k.ret(b, "EBADF", when=closed)


def _close_branches(closed: Expr, fd: str, text: str) -> list[tuple[Expr | None, str]]:
    """What a trace shows of a close: the -EBADF of an fd closed before, or the release."""
    return [(closed, f"close({fd}): not open: return -EBADF"), (Not(closed), text)]


@kernel(KVM_MAIN)
def kvm_vcpu_release(k: K, vm: int, vcpu: int) -> None:
    """close(vcpu fd): the file is released at its last fput, so not while a vCPU ioctl on it (KVM_RUN,
    which holds vcpu->mutex from start to return in the model) is in flight: then kvm_put_kvm. The wait
    is on vcpu->mutex being free (kvm_s390_handle_pv's holding of it only delays the close; that ioctl's
    VM fd keeps the kvm alive anyway); later ioctls on the fd fail in fdget (-EBADF)."""
    w = k.w
    b = Body()
    fd = w.vcpu_fd_closed.get((vm, vcpu))
    text = f"kvm_put_kvm (vCPU {vcpu} fd)"
    if fd is None:
        w.put_kvm(b, vm)
        k.step("kvm_vcpu_release", text, body=b)
        return
    _close_or_ebadf(k, b, fd.var, vm)
    b.set(fd, True)
    k.step("kvm_vcpu_release", text, body=b, guard=w.VM[vm][vcpu].owner.var == 0,
           branches=_close_branches(fd.var, f"vCPU {vcpu} fd", text))
