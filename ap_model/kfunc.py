"""Kernel functions: the unit a vfio_ap design is written in.

A design is a *table of kernel functions* (``vfio_ap_mdev_set_kvm``,
``handle_pqap``, ``kvm_arch_crypto_set_masks``, ...), each written once as
labelled statements -- lock operations, field writes, calls to other kernel
functions, returns with an errno -- and naming its source file. A function
body is a Python function ``body(k, **args)`` that emits steps for the thread
``k.t`` of the world ``k.w``; it calls other kernel functions only through
``k.call(name, **args)``, so every call goes through the design's table.

A *named hunk* of a function is itself a table entry named
``"<function>.<hunk>"`` (e.g. ``"vfio_ap_mdev_set_kvm.publish_hook"``), called
by the function with ``k.call``. Deriving a design overrides table entries --
whole functions or single hunks -- and may add operations and properties.
That is the one variation mechanism: behaviour differs between designs only
through the table. The struct layout of an era (which locks and fields exist:
``Era``) is declared data, not behaviour.

The structure the prover builds on (``docs/kernel-functions.md``):

- pools of instances: ``struct kvm`` kvm0.., ``struct ap_matrix_mdev``
  mdev0.., AP queues (APID x APQI), vCPUs per VM; locks come in families with
  one instance per pool slot (``kvm->lock`` of each kvm);
- per-instance fields: ``mdev{m}.matrix.apm``, ``kvm{v}.crycb.apm``, ...
  (``World`` declares them from the spec's constants and the era's ``Era``);
- kernel functions parameterised by instance: ``vfio_ap_mdev_set_kvm(m, vm)``
  takes constant indices from the spec; a function reaching an instance
  chosen by state (``matrix_mdev->kvm``) passes an expression, and the engine
  (``checker.lang.block``) expands it over the family.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from checker.lang.design import OperationSig, Param, Scenario, ScenarioError, ScenarioErrorCollector
from checker.lang.expr import Expr
from checker.lang.program import ModelError, Program, ProgramBuilder, RwSem, ThreadBuilder
from checker.report.results import Trace

from .config import queues_reached_twice, sysfs_hex
from .symmetry import declare_symmetry
from .world import HOST_CONFIG_CHANGES, MDEV_ATTRIBUTES, VM_IOCTLS, Body, E, Era, World, parse_cfg


@dataclass(frozen=True)
class KernelFunction:
    """One kernel function (or one named hunk ``fn.hunk`` of it) as a table entry."""

    name: str
    source: str  # file in the kernel tree, e.g. drivers/s390/crypto/vfio_ap_ops.c
    body: Callable[..., Any]
    doc: str = ""


def kernel(source: str, name: str = "") -> Callable[[Callable[..., Any]], KernelFunction]:
    """Decorator: ``@kernel("drivers/s390/crypto/vfio_ap_ops.c")`` over ``def vfio_ap_mdev_remove(k, mdev)``.
    ``name`` for a hunk (``"vfio_ap_mdev_set_kvm.publish_hook"``) or a function not a Python identifier."""

    def wrap(fn: Callable[..., Any]) -> KernelFunction:
        return KernelFunction(name or fn.__name__, source, fn, inspect.getdoc(fn) or "")

    return wrap


def collect(*modules: ModuleType) -> dict[str, KernelFunction]:
    """Every KernelFunction defined at the top level of ``modules``; a name defined twice is an error."""
    out: dict[str, KernelFunction] = {}
    for mod in modules:
        for obj in vars(mod).values():
            if isinstance(obj, KernelFunction):
                if obj.name in out and out[obj.name] is not obj:
                    raise ModelError(f"kernel function {obj.name!r} defined twice ({mod.__name__})")
                out[obj.name] = obj
    return out


@dataclass(frozen=True)
class Operation:
    """What a spec thread may run: a userspace-visible event and the kernel function it enters."""

    sig: OperationSig
    entry: str  # the kernel entry shown in traces ("KVM_RUN", "close(vfio device)")
    function: str  # table entry the thread runs


class K:
    """A thread's view while kernel functions emit its steps: world, thread, and the design's table."""

    def __init__(self, w: World, t: ThreadBuilder, table: Mapping[str, KernelFunction], design: str) -> None:
        self.w, self.t, self.table, self.design = w, t, table, design

    def call(self, name: str, /, **args: Any) -> Any:
        """Run kernel function (or hunk) ``name`` of the design's table."""
        fn = self.table.get(name)
        if fn is None:
            raise ModelError(f"design {self.design}: no kernel function {name!r} in its table")
        return fn.body(self, **args)

    def has(self, name: str) -> bool:
        return name in self.table

    # conveniences bound to the thread (the semantics live in checker.lang.block)
    def lock(self, lk: Any, function: str, **kw: Any) -> int:
        return self.w.lock(self.t, lk, function, **kw)

    def unlock(self, function: str, *items: tuple[Any, ...], **kw: Any) -> int:
        return self.w.unlock(self.t, function, *items, **kw)

    def step(self, function: str, text: str, **kw: Any) -> int:
        return self.w.step(self.t, function, text, **kw)

    def label(self, base: str) -> str:
        return self.w.label(self.t, base)

    def at(self, label: str) -> None:
        """The next step carries ``label`` (a C label / a branch target)."""
        self.t.label(label)

    def goto(self, label: str) -> None:
        self.t.goto(label)

    def end(self) -> str:
        """The label of "return from this operation"."""
        return self.w.end_label(self.t)

    def ret(self, b: Body, value: int | Expr | str, when: Expr | None = None) -> None:
        """The thread's return value (errno name, 0, or an errno expression), if ``when`` holds."""
        f = self.w.ret(self.t)
        if f is not None:
            b.set(f, E[value] if isinstance(value, str) else value, when=when)

    def local(self, name: str, slots: Sequence[str]) -> Any:
        return self.w.local(self.t, name, slots)


PropertyAdder = Callable[[World], None]


@dataclass
class KernelDesign:
    """A registered design: a table of kernel functions, the operations a spec may run, the era's
    struct layout, and (for derived designs) what it overrides of the design it derives from."""

    name: str
    summary: str
    era: Era
    table: dict[str, KernelFunction]
    catalog: dict[str, Operation]
    constants: dict[str, Param]
    properties: tuple[PropertyAdder, ...] = ()
    derived_from: str = ""
    overrides: tuple[str, ...] = ()
    commits: tuple[str, ...] = ()
    doc: str = ""  # docs/designs/<file>
    alias_of: str = ""

    @property
    def operations(self) -> dict[str, OperationSig]:
        return {n: op.sig for n, op in self.catalog.items()}

    def derive(self, name: str, summary: str, *, era: Era | None = None, override: Iterable[KernelFunction] = (),
               add: Iterable[KernelFunction] = (), operations: Mapping[str, Operation] | None = None,
               drop_operations: Sequence[str] = (), properties: Sequence[PropertyAdder] = (),
               commits: Sequence[str] = (), doc: str = "") -> KernelDesign:
        """A new design: this table with ``override`` entries replaced (each must exist here) and ``add``
        entries added (each must not), operations added/dropped, properties added."""
        table = dict(self.table)
        names: list[str] = []
        for fn in override:
            if fn.name not in table:
                raise ModelError(f"design {name}: override of {fn.name!r}, which {self.name} does not have")
            table[fn.name] = fn
            names.append(fn.name)
        for fn in add:
            if fn.name in table:
                raise ModelError(f"design {name}: {fn.name!r} already in {self.name}: override it instead")
            table[fn.name] = fn
        catalog = {n: op for n, op in self.catalog.items() if n not in drop_operations}
        catalog.update(operations or {})
        for op in catalog.values():
            if op.function not in table:
                raise ModelError(f"design {name}: operation {op.sig.name} enters {op.function!r}, not in the table")
        return KernelDesign(name, summary, era or self.era, table, catalog, self.constants,
                            self.properties + tuple(properties), self.name, tuple(names), tuple(commits), doc)

    def alias(self, name: str) -> KernelDesign:
        """The same design under another registered name."""
        return KernelDesign(name, f"alias of {self.name}: {self.summary}", self.era, self.table, self.catalog,
                            self.constants, self.properties, self.derived_from, self.overrides, self.commits,
                            self.doc, alias_of=self.name)

    # ------------------------------------------------------------ build
    def build(self, scenario: Scenario) -> Program:
        errors = ScenarioErrorCollector()  # every bad constant and call of the spec at once, not only the first
        cfg = parse_cfg(dict(scenario.constants), errors)
        cfg.sysfs_hex = sysfs_hex(scenario.written)
        for ts in scenario.threads:  # how many fds of one vfio device the scenario can hold at once
            for c in ts.run:
                if c.name == "open_device" and isinstance(c.args.get("mdev"), int):
                    cfg.opens[c.args["mdev"]] = cfg.opens.get(c.args["mdev"], 0) + 1
                if c.name == "close_vcpu_fd":  # its vCPU's ioctls then see a closed fd (-EBADF)
                    vm, vcpu = c.args.get("vm", 0), c.args.get("vcpu", 0)
                    if isinstance(vm, int) and isinstance(vcpu, int):
                        cfg.closed_vcpu_fds.add((vm, vcpu))
        # a VM fd the scenario closes while it also runs VM ioctls on it: those ioctls hold the file (fdget);
        # or closes twice: the second close() finds no file (-EBADF)
        closes = [c.args.get("vm", 0) for ts in scenario.threads for c in ts.run if c.name == "close_vm_fd"]
        cfg.closed_vm_fds = (_vms_of(scenario, ("close_vm_fd",)) & _vms_of(scenario, VM_IOCTLS)) | {
            v for v in closes if isinstance(v, int) and closes.count(v) > 1}
        # an mdev whose attributes the scenario writes and which it removes: the writes against the drain
        cfg.sysfs_removed = _written_after_removal(scenario)
        # a queue device two threads detach or attach drivers of: the driver core's device lock (ap_bus.py)
        cfg.device_locked = queues_reached_twice(cfg, [[(c.name, c.args) for c in ts.run] for ts in scenario.threads])
        pb = ProgramBuilder(f"{self.name}:{scenario.name}")
        try:
            w = World(pb, cfg, self.era)
        except Exception:
            errors.raise_if_any()  # a world from constants with dropped entries: report those, not this
            raise
        w.scenario_ops = {c.name for ts in scenario.threads for c in ts.run}
        calls: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # what each thread runs (symmetry groups)
        # a thread changes the machine's AP configuration: the scan's objects and the machine's configuration
        # (World.ap_scan) are declared before any thread's step reads them (a ZAPQ's effect: hw_configured)
        declare_scan = bool(w.scenario_ops & set(HOST_CONFIG_CHANGES)) and "ap_scan_bus:serialise" in self.table
        for ti, ts in enumerate(scenario.threads):
            t = pb.thread(ts.name, cyclic=ts.cyclic)
            k = K(w, t, self.table, self.name)
            if declare_scan:
                k.call("ap_scan_bus:serialise")
                declare_scan = False
            for oi, call in enumerate(ts.run):
                key = f"threads.{ti}.run.{oi}"
                op = self.catalog.get(call.name)
                args = None
                with errors.collect():
                    if op is None:
                        raise ScenarioError(key, f"design {self.name} does not model {call.name!r}; "
                                                 f"it models: {', '.join(self.catalog)}")
                    args = check_args(w, op.sig, dict(call.args), key)
                if op is None or args is None:
                    continue
                calls.setdefault(ts.name, []).append((call.name, args))
                w.begin_op(t)
                w.ops_used.add(call.name)
                with t.op(op.entry):
                    _run(k, op.function, call.name, args)
            w.end_thread(t)
        errors.raise_if_any()
        w.add_properties()
        for add in self.properties:
            add(w)
        declare_symmetry(w, scenario, calls)
        # RwSem.held_by() creates a thread's reader bit lazily: create every reader bit before freezing
        for lk in pb.locks:
            if isinstance(lk, RwSem):
                for ti in range(len(pb.threads)):
                    lk.reader(ti)
        return pb.build()


    def universal_scenario(self, constants: Mapping[str, Any], operations: Iterable[str] = ()) -> Scenario:
        """The design hook of ``apcheck prove --parametric``: every operation (or those named) on every
        instance of ``constants`` (the design's defaults for those not given), one thread each."""
        from .universal import universal_scenario

        given = {k: p.default for k, p in self.constants.items() if p.default is not None}
        given.update(constants)
        names = set(operations)
        ops = {n: sig for n, sig in self.operations.items() if not names or n in names}
        return universal_scenario(self.name, ops, given)

    def sized_constants(self, vms: int, adapters: int,
                        domains: int) -> tuple[dict[str, Any], tuple[str, ...], str]:
        """The design hook of ``apcheck prove --parametric --sizes``: the constants of one size, the
        operations every size adds to the target's, and what the instances are (universal.sized_constants)."""
        from .universal import SIZED_OPERATIONS, SIZED_TEXT, sized_constants

        return sized_constants(vms, adapters, domains), SIZED_OPERATIONS, SIZED_TEXT

    def instance_owners(self, scenario: Scenario) -> dict[str, dict[str, int]]:
        """Each thread's own member of each instance pool (universal.instance_owners)."""
        from .universal import instance_owners

        return instance_owners(scenario)

    def pool_lemmas(self) -> tuple[str, ...]:
        """Lemmas ``prove --parametric --all-sizes`` assumes (proved with each goal): the universal ones but those
        not stated over the guests, and the guest-by-guest kvm count (guest_lemmas)."""
        from .guest_lemmas import POOL_UNSTATED
        from .properties import PARAMETRIC_LEMMAS

        return tuple(x for x in PARAMETRIC_LEMMAS if x not in POOL_UNSTATED) + ("lemma-kvm-guest-refs",)

    def pool_unstated(self) -> tuple[str, ...]:
        """Properties no quantifier over the guests states (a sum over the mdevs): no --all-sizes goal."""
        from .guest_lemmas import POOL_UNSTATED

        return POOL_UNSTATED

    def instance_orbits(self, scenario: Scenario) -> dict[str, str]:
        """Each thread's operation apart from its guest (universal.instance_orbits)."""
        from .universal import instance_orbits

        return instance_orbits(scenario)

    def sized_coverage(self, scenario: Scenario, program: Program) -> tuple[bool, str]:
        """Whether the assign operations reach every matrix of a size (universal.sized_coverage)."""
        from .universal import sized_coverage

        return sized_coverage(scenario, program)

    def universal_once(self) -> tuple[str, ...]:
        """Operations of ``universal_scenario`` that run at most once (closing an fd, removing an mdev)."""
        from .universal import ONCE

        return ONCE

    def universal_lemmas(self) -> tuple[str, ...]:
        """Lemmas of the universal scenario ``prove --parametric`` assumes (proved with each goal)."""
        from .properties import PARAMETRIC_LEMMAS

        return PARAMETRIC_LEMMAS

    def repro_script(self, scenario: Scenario, trace: Trace, prop: str, kind: str) -> str:
        """The design hook of ``apcheck repro``: a shell script driving ``trace`` on an s390 LPAR."""
        from .repro import repro_script

        return repro_script(self.name, scenario, trace, prop, kind, {n: op.entry for n, op in self.catalog.items()})


def _written_after_removal(scenario: Scenario) -> set[int]:
    """The mdevs an attribute write can reach once their remove has begun: written in one thread and removed
    in another, or written after the remove in one thread (cyclic: anywhere). A thread that writes and then
    removes, alone, never needs the drain."""
    out: set[int] = set()
    removers: dict[int, set[int]] = {}
    writers: dict[int, set[int]] = {}
    for ti, ts in enumerate(scenario.threads):
        removed: set[int] = set()
        for c in list(ts.run) * (2 if ts.cyclic else 1):
            m = c.args.get("mdev", 0)
            if not isinstance(m, int):
                continue  # a bad argument is reported by check_args
            if c.name == "mdev_remove":
                removed.add(m)
                removers.setdefault(m, set()).add(ti)
            elif c.name in MDEV_ATTRIBUTES:
                writers.setdefault(m, set()).add(ti)
                if m in removed:
                    out.add(m)
    out |= {m for m, ws in writers.items() if any(w != r for w in ws for r in removers.get(m, ()))}
    return out


def _vms_of(scenario: Scenario, names: Sequence[str]) -> set[int]:
    """The VMs the scenario's calls of ``names`` name (their ``vm`` argument, 0 by default)."""
    vms = [c.args.get("vm", 0) for ts in scenario.threads for c in ts.run if c.name in names]
    return {v for v in vms if isinstance(v, int)}  # a bad argument is reported by check_args


def _run(k: K, function: str, op: str, args: dict[str, Any]) -> None:
    """Operation ``op``'s kernel function; an attribute write or the remove of an mdev whose files the
    scenario both writes and removes goes through kernfs (ap_model/kernel/kernfs.py)."""
    from .kernel import kernfs

    m = args.get("mdev")
    if m not in k.w.KN:
        k.call(function, **args)
    elif op in MDEV_ATTRIBUTES:
        kernfs.attribute_write(k, m, lambda: k.call(function, **args))
    elif op == "mdev_remove":
        kernfs.remove_attributes(k, m)
        k.call(function, **args)
    else:
        if op == "mdev_create":
            kernfs.add_attributes(k, m)
        k.call(function, **args)


def check_args(w: World, sig: OperationSig, args: dict[str, Any], key: str) -> dict[str, Any]:
    """Spec arguments -> indices (real APIDs/APQIs -> the i-th modelled), with range errors at ``key``."""
    op = sig.name
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


def _idx(values: list[int], v: int, key: str, what: str) -> int:
    if v not in values:
        raise ScenarioError(key, f"{what} {v} is not modelled (constants: {values})")
    return values.index(v)


__all__ = ["E", "K", "KernelDesign", "KernelFunction", "Operation", "check_args", "collect", "kernel"]
