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
from typing import Any

from checker.lang.design import OpCall, OperationSig, Scenario, ThreadSpec

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


# closing a file descriptor happens once per fd (a dup'ed fd drops the reference only at its last close):
# the parametric prover keeps exactly one thread of such a kind (KernelDesign.universal_once)
ONCE = ("close_vm_fd", "close_vcpu_fd")
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


__all__ = ["SIZED_OPERATIONS", "sized_constants", "thread_name", "universal_scenario"]
