"""From a counterexample to a reproduction attempt on an s390 LPAR (``apcheck repro SPEC TRACE.json``).

The script drives, from userspace, what each model thread did: the sysfs writes
of the vfio_ap and AP bus interfaces, the QEMU/QMP steps that open and close the
mdev's vfio device, and inside the guest the actions that make it issue
PQAP(AQIC) or switch to Secure Execution. Each thread is a shell function; they
start in the order the trace starts them. Where the trace interleaves steps
inside the kernel, userspace cannot force the timing: the script says so at that
point, and the whole race can be repeated (REPEAT=n). It ends with what to look
for in the kernel log for the property the trace violates.

What cannot be driven from userspace at all (the vfio_ap module's view of a
second hook registrant, ...) is written as a ``TIMING``/``MANUAL`` comment, never
as a fake command. The mapping is the vfio_ap interface as documented in
Documentation/arch/s390/vfio-ap.rst.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from checker.lang.design import OpCall, Scenario
from checker.report.results import Trace

from .config import Cfg, parse_cfg, sysfs_hex

MDEV_TYPE = "/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough"
MDEV_DEV = "/sys/bus/mdev/devices"

# what the kernel log shows when the property fails (kernel config that makes it visible)
LOOK_FOR = {
    "deadlock": ("CONFIG_DETECT_HUNG_TASK=y (hung_task_timeout_secs=30)",
                 "INFO: task <comm>:<pid> blocked for more than 30 seconds, and the blocked tasks' stacks "
                 "(echo w > /proc/sysrq-trigger)"),
    "lock-order": ("CONFIG_PROVE_LOCKING=y",
                   "WARNING: possible circular locking dependency detected (lockdep reports the cycle once each "
                   "edge has been taken, even when this run does not deadlock)"),
    "memory-safety": ("CONFIG_KASAN=y",
                      "BUG: KASAN: use-after-free / slab-use-after-free in the function named below"),
    "data-race": ("CONFIG_KCSAN=y", "BUG: KCSAN: data-race in the functions named below"),
}
# s390's oops for an access through a NULL pointer (arch/s390/mm/fault.c); no debug option needed
NULL_DEREF = ("CONFIG_PANIC_ON_OOPS unset (keep the machine up to read the oops)",
              "Unable to handle kernel pointer dereference in virtual kernel address space, in the function "
              "named below")
OWNERSHIP = ("CONFIG_ZCRYPT=m, lszcrypt -V in the host and in the guest",
             "an APQN listed as online in both the host (zcrypt) and a guest, or in two guests")


@dataclass
class Call:
    thread: str
    call: OpCall
    first_step: int  # trace step that starts it (0: not started in the trace)
    steps: list[int]
    until: int = 0  # last trace step at which it is still running (the trace's end if it never returns)


def _q(text: str) -> str:
    return shlex.quote(text)


def _hex(n: int) -> str:
    return f"0x{n:x}"


def _apqn(apid: int, apqi: int) -> str:
    return f"{apid:02x}.{apqi:04x}"


def _mask_edit(cfg: Cfg, which: str, sign: str, n: int) -> str:
    """One term of a relative apmask/aqmask edit (``+N`` sets bit N): the number in hex where the spec
    wrote that mask in hex, as the trace shows it (the kernel's modify_bitmap reads hex and decimal)."""
    return sign + (_hex(n) if which[:2] in cfg.sysfs_hex else str(n))


class _Commands:
    """Shell text for each modelled operation (values are the real APIDs/APQIs of the spec)."""

    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg

    def mdev(self, m: int) -> str:
        return f"{MDEV_DEV}/$UUID{m}"

    def for_call(self, call: OpCall) -> list[str]:
        a = call.args
        handler: Callable[..., list[str]] | None = getattr(self, "op_" + call.name, None)
        if handler is None:
            return [f"# MANUAL: {call.name} has no userspace equivalent in this script; do it by hand"]
        return handler(**a)

    def op_assign_adapter(self, apid: int, mdev: int = 0) -> list[str]:
        return [f"echo {_hex(apid)} > {self.mdev(mdev)}/assign_adapter"]

    def op_unassign_adapter(self, apid: int, mdev: int = 0) -> list[str]:
        return [f"echo {_hex(apid)} > {self.mdev(mdev)}/unassign_adapter"]

    def op_assign_domain(self, apqi: int, mdev: int = 0) -> list[str]:
        return [f"echo {_hex(apqi)} > {self.mdev(mdev)}/assign_domain"]

    def op_unassign_domain(self, apqi: int, mdev: int = 0) -> list[str]:
        return [f"echo {_hex(apqi)} > {self.mdev(mdev)}/unassign_domain"]

    def op_mdev_create(self, mdev: int = 0) -> list[str]:
        return [f"echo $UUID{mdev} > {MDEV_TYPE}/create"]

    def op_mdev_remove(self, mdev: int = 0) -> list[str]:
        return [f"echo 1 > {self.mdev(mdev)}/remove"]

    def _mask(self, which: str, reserve: list[int], release: list[int]) -> list[str]:
        edits = [_mask_edit(self.cfg, which, "+", x) for x in reserve] + \
            [_mask_edit(self.cfg, which, "-", x) for x in release]
        return [f"echo {','.join(edits) or '+0,-0'} > /sys/bus/ap/{which}   # relative edit: +N sets bit N"]

    def op_apmask_store(self, reserve: list[int] = [], release: list[int] = []) -> list[str]:  # noqa: B006
        return self._mask("apmask", reserve, release)

    def op_aqmask_store(self, reserve: list[int] = [], release: list[int] = []) -> list[str]:  # noqa: B006
        return self._mask("aqmask", reserve, release)

    def op_unbind_queue(self, apid: int, apqi: int) -> list[str]:
        return [f"echo {_apqn(apid, apqi)} > /sys/bus/ap/drivers/vfio_ap/unbind"]

    def op_adapter_standby(self, apid: int) -> list[str]:
        return [f"chzcrypt -d {_hex(apid)}   # configure the adapter off; the AP bus scan follows"]

    def op_adapter_online(self, apid: int) -> list[str]:
        return [f"chzcrypt -e {_hex(apid)}   # configure the adapter back on; the AP bus scan follows"]

    def op_vfio_ap_init(self) -> list[str]:
        return ["modprobe vfio_ap"]

    def op_vfio_ap_exit(self) -> list[str]:
        return ["rmmod vfio_ap"]

    def op_open_device(self, mdev: int = 0, vm: int = 0) -> list[str]:
        return [f"qmp kvm{vm} device_add driver=vfio-ap id=ap{mdev} sysfsdev={self.mdev(mdev)}"
                "   # vfio core open -> vfio_ap_mdev_set_kvm"]

    def op_close_device(self, mdev: int = 0) -> list[str]:
        vm = self.cfg.attached.get(mdev, 0)
        return [f"qmp kvm{vm} device_del id=ap{mdev}   # -> vfio_ap_mdev_unset_kvm once the guest releases it"]

    def op_kvm_run(self, vm: int = 0, vcpu: int = 0) -> list[str]:
        return [f"guest kvm{vm} 'for q in /sys/bus/ap/devices/??.????; do d=$(readlink -f $q/driver); "
                "n=${q##*/}; echo $n > $d/unbind; echo $n > $d/bind; done'",
                f"# rebinding its queues makes the guest enable AP interrupts again: PQAP(AQIC) on a vCPU "
                f"(model: vcpu{vcpu}), intercepted -> handle_pqap"]

    def op_pv_switch(self, vm: int = 0) -> list[str]:
        return [f"guest kvm{vm} reboot   # the disk's default entry must be a Secure Execution image (genprotimg):",
                "# QEMU then switches the VM to protected mode: KVM_S390_PV_COMMAND -> kvm_s390_handle_pv"]

    def op_close_vm_fd(self, vm: int = 0) -> list[str]:
        return [f"qmp kvm{vm} quit   # QEMU closes the VM fd: kvm_vm_release -> kvm_put_kvm"]

    def op_close_vcpu_fd(self, vm: int = 0, vcpu: int = 0) -> list[str]:
        return [f"# MANUAL: close vcpu{vcpu}'s fd of kvm{vm} (kvm_vcpu_release): s390 QEMU cannot unplug a vCPU;",
                f"qmp kvm{vm} quit   # quitting QEMU closes every vCPU fd"]

    def op_set_apie(self, vm: int = 0, on: bool = True) -> list[str]:
        flag = "on" if on else "off"
        return [f"# MANUAL: APIE {flag} while kvm{vm} runs: KVM_SET_DEVICE_ATTR(KVM_S390_VM_CRYPTO_"
                f"{'ENABLE' if on else 'DISABLE'}_APIE) has no QEMU monitor command; use a small ioctl tool"]

    def op_hook_register_other(self) -> list[str]:
        return ["# MANUAL: load a second module that calls kvm_s390_pqap_hook_register (v17 design only)"]


def _calls(scenario: Scenario, trace: Trace, entry: dict[str, str]) -> list[Call]:
    """Each spec call with the trace steps it ran: a thread's calls run in order, each under its
    entry operation, so a step of a thread belongs to the first unfinished call whose entry it shows."""
    out: list[Call] = []
    for ts in scenario.threads:
        calls = [Call(ts.name, c, 0, []) for c in ts.run]
        k = 0
        for step in trace.steps:
            if step.thread != ts.name or k >= len(calls):
                continue
            if calls[k].steps and step.operation != entry.get(calls[k].call.name) and k + 1 < len(calls) \
                    and step.operation == entry.get(calls[k + 1].call.name):
                k += 1
            calls[k].steps.append(step.index)
            if not calls[k].first_step:
                calls[k].first_step = step.index
        last = [s for s in trace.steps if s.thread == ts.name]
        returned = bool(last) and last[-1].function == "syscall_exit"
        for c, nxt in zip(calls, calls[1:] + [None]):
            if c.first_step:
                c.until = (nxt.first_step - 1 if nxt is not None and nxt.first_step
                           else c.steps[-1] if returned else trace.length)
        out += calls
    return out


def _setup(cfg: Cfg) -> list[str]:
    lines = ["# ---- the trace's initial state (constants of the spec)"]
    if cfg.module_loaded:
        lines.append("modprobe vfio_ap")
    # relative edits (+N sets bit N, -N clears it) touch only the modelled APIDs/APQIs
    for which, values, kept in (("apmask", cfg.adapters, cfg.apmask), ("aqmask", cfg.domains, cfg.aqmask)):
        edits = ",".join(_mask_edit(cfg, which, "+" if i in kept else "-", x) for i, x in enumerate(values))
        lines.append(f"echo {edits} > /sys/bus/ap/{which}   # + : left to zcrypt, - : free for vfio_ap")
    for m in cfg.created:
        lines.append(f"echo $UUID{m} > {MDEV_TYPE}/create   # mdev{m}")
        aps, dos = cfg.matrix.get(m, ([], []))
        lines += [f"echo {_hex(cfg.adapters[i])} > {MDEV_DEV}/$UUID{m}/assign_adapter" for i in aps]
        lines += [f"echo {_hex(cfg.domains[j])} > {MDEV_DEV}/$UUID{m}/assign_domain" for j in dos]
    for v in range(cfg.vms):
        devs = " ".join(f"-device vfio-ap,id=ap{m},sysfsdev={MDEV_DEV}/$UUID{m}"
                        for m, vv in cfg.attached.items() if vv == v)
        lines.append(f"start_guest kvm{v} {cfg.vcpus} {devs}".rstrip())
    return lines


PRELUDE = """\
set -u
REPEAT=${REPEAT:-1}  # races: run the interleaving this many times (undo each run's effects in between:
                     # unassign, restart the guest; this script does not)
QEMU=${QEMU:-qemu-system-s390x}
GUEST_IMAGE=${GUEST_IMAGE:?set GUEST_IMAGE to a bootable s390x guest disk with sshd}
qmp() {  # qmp VM COMMAND [KEY=VALUE...]: one QMP command to the guest's monitor socket
    local vm=$1 cmd=$2 args="" kv; shift 2
    for kv in "$@"; do args="$args${args:+,}\\"${kv%%=*}\\":\\"${kv#*=}\\""; done
    printf '{"execute":"qmp_capabilities"}\\n{"execute":"%s","arguments":{%s}}\\n' "$cmd" "$args" |
        socat - "UNIX-CONNECT:/run/apcheck-$vm.qmp"
}
guest() {  # guest VM COMMAND: run a command inside the guest (ssh forwarded to port 2200+N)
    local vm=$1; shift
    ssh -p $((2200 + ${vm#kvm})) root@localhost "$@"
}
start_guest() {  # start_guest VM NCPUS DEVICE-OPTIONS...: QEMU with the vfio-ap devices plugged
    local vm=$1 ncpu=$2; shift 2
    "$QEMU" -machine s390-ccw-virtio -cpu host -smp "$ncpu" -m 2G -nographic -daemonize \\
        -drive file="$GUEST_IMAGE",if=virtio,snapshot=on \\
        -nic user,hostfwd=tcp::$((2200 + ${vm#kvm}))-:22 \\
        -qmp "unix:/run/apcheck-$vm.qmp,server=on,wait=off" "$@"
}
"""


def repro_script(design_name: str, scenario: Scenario, trace: Trace, prop: str, kind: str,
                 entry: dict[str, str]) -> str:
    cfg = parse_cfg(dict(scenario.constants))
    cfg.sysfs_hex = sysfs_hex(scenario.written)
    cmds = _Commands(cfg)
    calls = _calls(scenario, trace, entry)
    started = sorted((c for c in calls if c.first_step), key=lambda c: c.first_step)
    apqns = " ".join(_apqn(a, d) for a in cfg.adapters for d in cfg.domains)
    need, look = LOOK_FOR.get(kind, OWNERSHIP)
    if kind == "memory-safety" and trace.steps and "NULL dereference" in trace.steps[-1].note:
        need, look = NULL_DEREF  # an oops, not a KASAN report
    out = [
        "#!/bin/bash",
        f"# apcheck repro: design {design_name}, spec {scenario.path or scenario.name}, property {prop} ({kind})",
        f"# A reproduction attempt of a {trace.length}-step counterexample, generated by `apcheck repro`.",
        f"# Needs: root on an s390 LPAR with APQNs {apqns} free for vfio_ap, QEMU, socat, ssh into the guest;",
        f"#        a kernel with {need}.",
        "# Steps inside the kernel cannot be scheduled from userspace: the lines marked TIMING say where the",
        "# model interleaved threads; run with REPEAT=1000 to try many schedules.",
        "",
        PRELUDE.rstrip(),
    ]
    out += [f"UUID{m}=${{UUID{m}:-$(uuidgen)}}" for m in range(cfg.mdevs)]
    out += [""] + _setup(cfg) + [""]
    out.append("# ---- one shell function per model thread, its calls in order")
    for ts in scenario.threads:
        body: list[str] = []
        for c in (c for c in calls if c.thread == ts.name and c.first_step):
            steps = f"steps {c.steps[0]}-{c.steps[-1]}" if len(c.steps) > 1 else f"step {c.steps[0]}"
            body.append(f"    # {c.call.name} ({steps} of the trace)")
            body += [f"    {line}" for line in cmds.for_call(c.call)]
        if body:
            out += [f"thread_{ts.name}() {{"] + body + ["}"]
    out += ["", "# ---- the interleaving, in the order the trace starts each thread",
            'for run in $(seq "$REPEAT"); do']
    launched: list[str] = []
    for c in started:
        if c.thread in launched:
            continue
        launched.append(c.thread)
        others = [x for x in calls if x.thread != c.thread and x.first_step and x.first_step < c.first_step <= x.until]
        for o in others:
            still = "never returns in the trace" if o.until == trace.length else f"returns after step {o.until}"
            out.append(f"    # TIMING: at trace step {c.first_step} {c.thread} starts while {o.thread} is inside "
                       f"{o.call.name} (from step {o.first_step}, {still}); the kernel decides, not userspace")
        out.append(f"    thread_{c.thread} &")
    out += ["    wait", "done", "", "# ---- what to look for", f"# {look}"]
    out += _expectations(trace, kind)
    out.append('dmesg | tail -n 200')
    return "\n".join(out) + "\n"


def _expectations(trace: Trace, kind: str) -> list[str]:
    lines = []
    if kind == "deadlock" and trace.blocked:
        lines.append("# the model's blocked threads (their stacks should end in these functions):")
        lines += [f"#   {t} blocked in {fn}: {call}, held by {h}" for t, fn, call, h in trace.blocked]
    if trace.final:
        lines.append(f"# the model's last state: {trace.final}")
    if trace.steps and trace.steps[-1].note:
        lines.append(f"# the violating step: {trace.steps[-1].thread} in {trace.steps[-1].function}: "
                     f"{trace.steps[-1].note}")
    return lines
