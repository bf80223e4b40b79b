"""Every operation of a design on every instance: the scenario ``apcheck prove --parametric DESIGN`` lifts.

One thread per operation of the design's catalogue and per argument tuple over the
instances of the constants (each VM, vCPU, mdev, APID, APQI; apmask/aqmask stores reserving or
releasing one adapter/domain; APIE on and off). The parametric prover
(``checker.prove.parametric``) then lets any number of threads run each of them, any number of
times (closing a file descriptor: once, ``ONCE``): with the shared state only changed by operations,
a thread running op1 then op2 is the same as two threads running them one after the other, so this
covers every thread running any
sequence of the design's operations (what a thread keeps between two operations -- its locks,
which the lock checks require released at return, and its errno -- is its own).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from checker.lang.design import OpCall, OperationSig, Scenario, ThreadSpec
from checker.lang.program import Program

from .config import Cfg, parse_cfg


def _values(sig: OperationSig, pname: str, cfg: Cfg) -> list[Any]:
    if pname == "vm":
        return list(range(cfg.vms))
    if pname == "vcpu":
        return list(range(cfg.vcpus))
    if pname == "mdev":
        return list(range(cfg.mdevs))
    if pname == "apid":
        return list(cfg.adapters)
    if pname == "apqi":
        return list(cfg.domains)
    if pname == "on":
        return [True, False]
    raise ValueError(f"operation {sig.name}: no instances for parameter {pname!r}")


def _arg_tuples(sig: OperationSig, cfg: Cfg) -> list[dict[str, Any]]:
    if sig.name in ("apmask_store", "aqmask_store"):
        vals = cfg.adapters if sig.name == "apmask_store" else cfg.domains
        return [{"reserve": [x], "release": []} for x in vals] + [{"reserve": [], "release": [x]} for x in vals]
    names = list(sig.params)
    return [dict(zip(names, combo)) for combo in itertools.product(*[_values(sig, n, cfg) for n in names])]


def thread_name(op: str, args: dict[str, Any]) -> str:
    parts = [op]
    for k, v in args.items():
        if isinstance(v, list):
            parts += [f"{k}{x}" for x in v]
        elif isinstance(v, bool):
            parts.append(f"{k}{int(v)}")
        else:
            parts.append(f"{k}{v}")
    return ".".join(parts)


# closing a file descriptor happens once per fd (a dup'ed fd drops the reference only at its last close), and
# removing an mdev once (``echo 1 > remove`` deletes the device with its remove attribute: a second write finds
# no file; re-creating an mdev is not modelled): the parametric prover keeps exactly one thread of such a kind
# (KernelDesign.universal_once)
ONCE = ("close_vm_fd", "close_vcpu_fd", "mdev_remove")
SCENARIO_NAME = "all-operations"  # the final design's parametric lemmas are stated for it (properties.py)


def universal_scenario(design: str, operations: dict[str, OperationSig], constants: dict[str, Any]) -> Scenario:
    """The scenario of every operation on every instance of ``constants``: one thread each, running it
    once (any number of times is any number of threads: what a thread keeps between two operations
    is its own)."""
    cfg = parse_cfg(dict(constants))
    threads = []
    for op, sig in operations.items():
        for args in _arg_tuples(sig, cfg):
            threads.append(ThreadSpec(thread_name(op, args), [OpCall(op, args)], cyclic=False))
    return Scenario(SCENARIO_NAME, design, "every operation of the design on every instance, any number of "
                    "threads, any number of times", dict(constants), threads)


# The instances of one size of ``apcheck prove --parametric --sizes`` (sized_constants). APIDs and APQIs are
# numbered as the bundled specs and the design defaults do (adapters 3, 4, domains 5, 6), continued upwards.
FIRST_APID, FIRST_APQI = 3, 5
# What every size adds to the target's operations: with the guests started on empty matrices, these are the
# steps that reach the other matrices (assign_adapter/assign_domain add any APID/APQI, one at a time; the
# unassigns take them away again), so that a goal proved at a size is proved for every matrix of that size.
SIZED_OPERATIONS = ("assign_adapter", "unassign_adapter", "assign_domain", "unassign_domain")


# what every size's instances are, for the scope of a PROVED row
SIZED_TEXT = ("at start: mdev i attached to kvm i, 1 vCPU per VM, every matrix empty; APIDs from 3, APQIs from 5, "
              "all configured, every queue bound to vfio_ap")
COVERED = ("every matrix reached from the empty ones (checked at each size: each assign, run alone, adds its "
           "APID/APQI to the mdev's matrix and its guest's CRYCB, each unassign takes it out)")


def instance_owners(scenario: Scenario) -> dict[str, dict[str, int]]:
    """Each thread's own member of each instance pool (symmetry.declare_instance_pools): the VM and the mdev
    its operation names, and the guest of either (a guest is kvm k with mdev k attached)."""
    out: dict[str, dict[str, int]] = {}
    for ts in scenario.threads:
        args = ts.run[0].args if ts.run else {}
        own: dict[str, int] = {pool: int(args[pool]) for pool in ("vm", "mdev") if pool in args}
        if len(set(own.values())) == 1:
            own["guest"] = next(iter(own.values()))
        out[ts.name] = own
    return out


def instance_orbits(scenario: Scenario) -> dict[str, str]:
    """Each thread's operation with its arguments but the VM and mdev: the threads of one orbit run the same
    operation on different guests (a once-only operation runs at most once per guest)."""
    return {ts.name: thread_name(ts.run[0].name, {k: v for k, v in ts.run[0].args.items() if k not in ("vm", "mdev")})
            for ts in scenario.threads if ts.run}


def sized_constants(vms: int, adapters: int, domains: int) -> dict[str, Any]:
    """The constants of one size: ``vms`` VMs (one vCPU each), mdev i attached to kvm i (so as many mdevs as
    VMs: ``attached`` allows one mdev per KVM), every matrix empty, so every guest starts with an empty
    CRYCB; ``adapters`` APIDs from 3 and ``domains`` APQIs from 5, all in the host configuration and none
    reserved by apmask/aqmask (apmask empty), so every queue is bound to vfio_ap at start. Every matrix of
    the size is then reached from the empty one by the assign operations (SIZED_OPERATIONS), which
    ``apcheck prove --parametric --sizes`` always runs."""
    return {
        "vms": vms, "vcpus": 1, "mdevs": vms,
        "adapters": [FIRST_APID + i for i in range(adapters)],
        "domains": [FIRST_APQI + i for i in range(domains)],
        "matrix": [], "attached": [f"mdev{i} -> kvm{i}" for i in range(vms)],
        "apmask": [],  # config_apm/config_aqm: the defaults, every adapter and domain configured
    }


def sized_coverage(scenario: Scenario, program: Program) -> tuple[bool, str]:
    """(True, COVERED) when the assign operations reach every matrix at this size, else (False, what went
    wrong first): ``_coverage``."""
    why = _coverage(scenario, program)
    return (False, f"NOT every matrix: the assign operations do not reach them ({why})") if why else (True, COVERED)


def _coverage(scenario: Scenario, program: Program) -> str:
    """Whether the assign operations reach the matrices at this size: for each mdev m, from the initial state,
    m's assign threads run alone one after the other must each add their APID/APQI to m's matrix and to its
    guest's CRYCB (the hot-plug path: all queues are bound and configured, so the filter keeps them), then
    m's unassign threads must empty both again. "" when they do, else what went wrong first (a design that
    refuses assignments while the guest runs, -EBUSY before the dynamic configuration, covers only the empty
    matrix). With unassign taking any subset back out, this reaches every matrix of one mdev; mdevs' matrices
    are set by independent threads under the same sharing check (vfio_ap_mdev_verify_no_sharing)."""
    from checker.search.codegen import compile_program

    succ = compile_program(program).succ
    threads = {t.name: t.index for t in program.threads}
    cfg = parse_cfg(dict(scenario.constants))
    for m, v in sorted(cfg.attached.items()):
        state = program.layout.initial()
        for op in ("assign", "unassign"):
            for ts in scenario.threads:
                call = ts.run[0]
                if call.name not in (f"{op}_adapter", f"{op}_domain") or call.args.get("mdev") != m:
                    continue
                state, why = _run_alone(program, succ, state, threads[ts.name])
                if why:
                    return f"{ts.name}: {why}"
            values = program.layout.decode(state)
            want = (0, 0) if op == "unassign" else ((1 << len(cfg.adapters)) - 1, (1 << len(cfg.domains)) - 1)
            for where in (f"mdev{m}.matrix", f"kvm{v}.crycb"):
                got = (values[f"{where}.apm"], values[f"{where}.aqm"])
                if got != want:
                    return (f"after the {op}_adapter/{op}_domain threads of mdev{m}, run alone, {where} is "
                            f"apm {got[0]:#x} aqm {got[1]:#x}, not apm {want[0]:#x} aqm {want[1]:#x}")
    return ""


def _run_alone(program: Program, succ: Callable[[int], list[tuple[int, int]]], state: int,
               thread: int) -> tuple[int, str]:
    """``thread``'s steps from ``state`` until it has none (it runs alone: one step at a time)."""
    for _ in range(10_000):
        mine = [(aid, ns) for aid, ns in succ(state) if program.actions[aid].thread == thread]
        if not mine:
            return state, ""
        aid, ns = mine[0]
        if ns < 0 or len(mine) > 1:
            a = program.actions[aid]
            return state, f"{a.function}: {a.text}: " + ("a check fails" if ns < 0 else "more than one step")
        state = ns
    return state, "does not finish"


__all__ = ["COVERED", "SIZED_OPERATIONS", "SIZED_TEXT", "sized_constants", "sized_coverage", "thread_name",
           "universal_scenario"]
