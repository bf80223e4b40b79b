"""What the vfio_ap world declares permutable (symmetry reduction, checker.search.reduce.symmetry).

Two declarations; the engine keeps only the swaps it checks valid on the built program (every step,
every selected property, the initial state unchanged), so a declaration here is a proposal, never a
claim:

- ``vcpus``: a vCPU thread that only runs KVM_RUN on one vCPU, with its ``vcpu->mutex``, its
  ``ECA_APIE`` bit and its ghost and errno fields.
- ``vms``: a whole VM group -- the ``struct kvm`` slot (pool state, refcount, CRYCB masks, APIE, its fds' state,
  hook or crypto data pointer, ``kvm->lock``, the hook rw-semaphore, every vCPU's ``vcpu->mutex``),
  the ``matrix_mdev`` slot the scenario pairs with it (``attached``, or an operation naming both,
  as ``open_device``: matrix, shadow APCB, ``matrix_mdev->kvm``, vfio core state, group lock,
  ``kvm_busy``), and the threads that only touch that VM and that mdev (its vCPU threads, the QEMU
  thread opening and closing its mdev, an administrator of that mdev alone) with their locals. The
  member's slots (``kvm0``, ``mdev0``) rename the values that name them: ``matrix_mdev->kvm``, the
  hook target, a queue's data owner (``kvm0``), a thread's ``kvm`` local.

Threads are matched across VM groups by their script (operation names, vCPU indices); a thread
with no counterpart in every group stays outside the members, and then the engine's check refuses
the swap if the thread touches a group (an administrator assigning to mdev1 only).

Adapters and domains move with a VM group when there are two groups: an adapter or a domain that only
one group uses (its mdev's initial matrix, its threads' arguments) is one of its slots, the k-th of
one group's is swapped with the k-th of the other's. The bit layout allows it: APM/AQM masks are at
most 4 bits and every mask operation the model uses (``&``, ``|``, ``^``, ``~``, ``==``, ``has``,
``setbit``, ``clrbit`` of a bit) commutes with a permutation of the bits, so the engine moves each
mask's bits (a value table over its 16 values, from ``Field.meta[MASK_ELEMENTS]``) and renames bit
numbers; each queue's fields go to the queue at the swapped APQN. A union of one-bit masks is written
as such (``World.bound_rows``), not as a chain over domains in order, so a swap of domains sees the
same expression. With three or more groups elements stay fixed: a queue is indexed by an (adapter,
domain) pair of two groups, which a positional ``Member`` cannot express for every permutation.
"""

from __future__ import annotations

from typing import Any

from checker.lang.design import Scenario
from checker.lang.layout import Field
from checker.lang.program import AnyLock, Member

from .world import World

Calls = dict[str, list[tuple[str, dict[str, Any]]]]  # thread -> [(operation, checked arguments)]


def declare_symmetry(w: World, scenario: Scenario, calls: Calls) -> None:
    _declare_vcpus(w, scenario)
    _declare_vms(w, scenario, calls)
    declare_instance_pools(w)


def declare_instance_pools(w: World) -> None:
    """The mdev and VM pools, for the loops the kernel steps mark over them (checker.lang.loops):
    each member's parts in the order the symmetry declaration lists them, threads left out (a
    thread's instance is its operation's argument)."""
    vms = [Member([], *_vm_parts(w, v), [w.kslots[v]]) for v in w.vms]
    mdevs = [Member([], *_mdev_parts(w, m), [w.mslots[m]]) for m in w.mdevs]
    w.pb.instance_pool("vm", vms)
    w.pb.instance_pool("mdev", mdevs)
    if len(vms) == len(mdevs) and all(w.cfg.attached.get(m) == m for m in w.mdevs):
        # guest k: kvm k with mdev k attached (the sized scenarios of --parametric --sizes)
        w.pb.instance_pool("guest", [Member([], v.fields + m.fields, v.locks + m.locks, v.slots + m.slots)
                                     for v, m in zip(vms, mdevs)])


def _declare_vcpus(w: World, scenario: Scenario) -> None:
    members = []
    for ts in scenario.threads:
        vc = {(c.args.get("vm", 0), c.args.get("vcpu", 0)) for c in ts.run if c.name == "kvm_run"}
        if len(vc) == 1 and all(c.name == "kvm_run" for c in ts.run) and ts.name in w.in_pqap:
            (v, c), = vc
            fd = [w.vcpu_fd_closed[v, c]] if (v, c) in w.vcpu_fd_closed else []
            members.append(Member([ts.name], [w.eca_apie[v][c], *fd, *_thread_fields(w, ts.name)], [w.VM[v][c]]))
    if len(members) > 1 and len({len(m.fields) for m in members}) == 1:
        w.pb.permutable("vcpus", members)


def _pairing(w: World, calls: Calls) -> dict[int, int] | None:
    """VM -> the mdev the scenario pairs it with (attached at start, or named together by one call);
    None when a VM or an mdev is paired twice."""
    pairs = set(w.cfg.attached.items()) | {(a["mdev"], a["vm"]) for cs in calls.values() for _, a in cs
                                           if "mdev" in a and "vm" in a}
    vm_of: dict[int, int] = {}
    for m, v in pairs:
        if vm_of.get(v, m) != m:
            return None
        vm_of[v] = m
    if len(set(vm_of.values())) != len(vm_of):
        return None
    return vm_of


def _declare_vms(w: World, scenario: Scenario, calls: Calls) -> None:
    paired = _pairing(w, calls)
    if paired is None or len(w.vms) < 2:
        return
    vms = sorted(paired) if paired else list(w.vms)
    if len(vms) < 2:
        return
    group_of = {("vm", v): g for g, v in enumerate(vms)} | {("mdev", paired[v]): g for g, v in enumerate(vms)
                                                            if v in paired}
    Role = tuple[tuple[str, Any], ...]  # a thread's script: operations and vCPU indices
    threads: list[list[tuple[Role, str]]] = [[] for _ in vms]
    for ts in scenario.threads:
        named = {(p, a[p]) for _, a in calls.get(ts.name, []) for p in ("vm", "mdev") if p in a}
        groups = {group_of.get(x, -1) for x in named}
        if len(groups) == 1 and -1 not in groups:
            role = tuple((op, a.get("vcpu")) for op, a in calls[ts.name])
            threads[groups.pop()].append((role, ts.name))
    common: dict[Role, int] = {}
    for r0 in {r for ts in threads for r, _ in ts}:
        common[r0] = min(sum(1 for r, _ in ts if r == r0) for ts in threads)
    first: dict[Role, int] = {}  # a role's place: its first thread in the scenario (members read in order)
    for order, ts in enumerate(scenario.threads):
        for group in threads:
            for r, name in group:
                if name == ts.name:
                    first.setdefault(r, order)
    members = []
    for g, v in enumerate(vms):
        mine = sorted(threads[g], key=lambda rt: first[rt[0]])  # stable: scenario order within a role
        kept, seen = [], dict.fromkeys(common, 0)
        for role, name in mine:
            if seen[role] < common[role]:
                seen[role] += 1
                kept.append(name)
        fields, locks = _vm_parts(w, v)
        slots = [w.kslots[v]]
        if v in paired:
            mf, ml = _mdev_parts(w, paired[v])
            fields, locks, slots = fields + mf, locks + ml, slots + [w.mslots[paired[v]]]
        for name in kept:
            fields += _thread_fields(w, name)
        members.append(Member(kept, fields, locks, slots))
    if len(members) == 2:
        _add_elements(w, members, [paired.get(v) for v in vms], calls)
    if len({(len(m.threads), len(m.fields), len(m.locks), len(m.slots)) for m in members}) == 1:
        w.pb.permutable("vms", members)


def _add_elements(w: World, members: list[Member], mdevs: list[int | None], calls: Calls) -> None:
    """Adapters and domains only one of two VM groups uses (its mdev's initial matrix, its threads'
    arguments) go with it: the k-th of one group's is swapped with the k-th of the other's, bits of
    every mask moved, and each queue's fields with the queue at the swapped APQN."""
    users: dict[tuple[str, int], set[int]] = {}
    for m in w.mdevs:
        g = mdevs.index(m) if m in mdevs else -1
        a_idx, d_idx = w.cfg.matrix.get(m, ([], []))
        for key in [("adapter", i) for i in a_idx] + [("domain", j) for j in d_idx]:
            users.setdefault(key, set()).add(g)
    group = {t: g for g, mb in enumerate(members) for t in mb.threads}
    for t, cs in calls.items():
        for op, a in cs:
            kind = "adapter" if op == "apmask_store" else "domain"  # what reserve/release lists name
            used = [("adapter", a["apid"])] if "apid" in a else []
            used += [("domain", a["apqi"])] if "apqi" in a else []
            used += [(kind, x) for p in ("reserve", "release") for x in a.get(p) or []]
            for key in used:
                users.setdefault(key, set()).add(group.get(t, -1))
    owned = [{k: sorted(i for (kk, i), us in users.items() if kk == k and us == {g}) for k in ("adapter", "domain")}
             for g in range(2)]
    if any(len(owned[0][k]) != len(owned[1][k]) for k in owned[0]) or not any(owned[0].values()):
        return
    swap = {k: dict(zip(owned[0][k], owned[1][k])) | dict(zip(owned[1][k], owned[0][k])) for k in owned[0]}
    images = {q: (swap["adapter"].get(q[0], q[0]), swap["domain"].get(q[1], q[1])) for q in w.queues}
    if any((q in w.DEV) != (img in w.DEV) for q, img in images.items()):
        return  # a queue device with its lock (ap_bus.py) would swap with one without: no reduction
    for g in range(2):
        members[g].slots += [w.elements(k)[i] for k in owned[g] for i in owned[g][k]]
    for q, img in images.items():
        if q < img:
            members[0].fields += [w.drv[q], w.vfio_queue[q], w.qdata[q]]
            members[1].fields += [w.drv[img], w.vfio_queue[img], w.qdata[img]]
            members[0].locks += [w.DEV[q]] if q in w.DEV else []
            members[1].locks += [w.DEV[img]] if img in w.DEV else []


def _thread_fields(w: World, name: str) -> list[Field]:
    out = [f for (t, _), f in sorted(w._locals.items(), key=lambda kv: kv[0][1]) if t == name]
    if name in w.in_pqap:
        out.append(w.in_pqap[name][1])
    if name in w.errno:
        out.append(w.errno[name])
    return out


def _vm_parts(w: World, v: int) -> tuple[list[Field], list[AnyLock]]:
    fields = [w.kvm.state[v], *(w.kvm.refs[v:v + 1] if w.kvm.refs else []), w.capm[v], w.caqm[v], w.cadm[v],
              w.csrc[v], w.apie[v], *w.eca_apie[v]]
    fields += [w.vcpu_fd_closed[v, c] for c in range(len(w.eca_apie[v])) if (v, c) in w.vcpu_fd_closed]
    fields += [w.vm_fd[v]] if v in w.vm_fd else []
    fields += [w.hook[v]] if w.hook else [w.data[v]] if w.data else []
    locks: list[AnyLock] = [w.KL[v], *w.VM[v]] + ([w.HR[v]] if w.HR else [])
    return fields, locks


def _mdev_parts(w: World, m: int) -> tuple[list[Field], list[AnyLock]]:
    per_mdev = [w.apm, w.aqm, w.sapm, w.saqm, w.adm, w.sadm, w.mkvm, w.vopen, w.closing, w.pending, w.vkvm,
                w.unregistered]
    fields = [w.mdev.state[m]] + [fs[m] for fs in per_mdev if fs]
    fields += [w.BUSY[m].holder] if w.BUSY else []
    fields += [w.sysfs_gone[m]] if m in w.sysfs_gone else []
    locks: list[AnyLock] = ([w.VG[m]] if w.VG else []) + ([w.KN[m]] if m in w.KN else [])
    return fields, locks
