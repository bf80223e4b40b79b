"""Scenario constants -> ``Cfg``: which adapters, domains, VMs, mdevs; initial assignments and attachments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checker.lang.design import ScenarioError, ScenarioErrorCollector


@dataclass
class Cfg:
    adapters: list[int]
    domains: list[int]
    vms: int
    vcpus: int
    mdevs: int
    created: list[int]
    matrix: dict[int, tuple[list[int], list[int]]]  # mdev -> (adapter idx, domain idx)
    attached: dict[int, int]  # mdev -> vm
    apmask: list[int]  # adapter idx
    aqmask: list[int]  # domain idx
    config_apm: list[int]
    config_aqm: list[int]
    module_loaded: bool
    track_errno: bool
    no_crycb: list[int] = field(default_factory=list)
    ap_instructions: bool = True
    apie_off: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sysfs_hex: frozenset[str] = frozenset()  # "ap"/"aq": the spec wrote that AP bus mask's values in hex
    opens: dict[int, int] = field(default_factory=dict)  # mdev -> open_device calls of the scenario (fd bound)
    closed_vcpu_fds: set[tuple[int, int]] = field(default_factory=set)  # (vm, vcpu) the scenario's close_vcpu_fd
    closed_vm_fds: set[int] = field(default_factory=set)  # VMs whose fd the scenario closes and runs a VM ioctl on
    sysfs_removed: set[int] = field(default_factory=set)  # mdevs whose attributes the scenario writes and removes
    device_locked: set[tuple[int, int]] = field(default_factory=set)  # queues whose AP bus device two threads reach


def _parse_matrix(entries: list[str], cfg: Cfg, errors: ScenarioErrorCollector) -> None:
    for k, s in enumerate(entries):
        key = f"constants.matrix.{k}"
        with errors.collect():
            _parse_matrix_entry(s, key, cfg)


def _parse_matrix_entry(s: str, key: str, cfg: Cfg) -> None:
    """One ``matrix`` entry; a bad one is recorded by the caller and the others still checked."""
    try:
        head, rest = s.split(":", 1)
        m = _mdev_name(head.strip(), cfg.mdevs)
        aps, _, aqs = rest.partition("x")
        apids = [int(x, 0) for x in aps.replace(",", " ").split()]
        apqis = [int(x, 0) for x in aqs.replace(",", " ").split()]
    except (ValueError, IndexError) as exc:
        raise ScenarioError(key, f"expected 'mdevN: APID[,APID] x APQI[,APQI]', got {s!r} ({exc})") from None
    a_idx = [_index(cfg.adapters, a, key, "adapter") for a in apids]
    d_idx = [_index(cfg.domains, d, key, "domain") for d in apqis]
    cfg.matrix[m] = (a_idx, d_idx)


def _mdev_name(s: str, n: int) -> int:
    if not s.startswith("mdev") or not s[4:].isdigit() or int(s[4:]) >= n:
        raise ValueError(f"unknown mdev {s!r} (mdev0..mdev{n - 1})")
    return int(s[4:])


def _index(values: list[int], v: int, key: str, what: str) -> int:
    if v not in values:
        raise ScenarioError(key, f"{what} {v} is not modelled (constants list {values})")
    return values.index(v)


def parse_cfg(c: dict[str, Any], errors: ScenarioErrorCollector | None = None) -> Cfg:
    """``errors``: record each bad list entry (matrix, attached, created, ...) there and go on, so a spec's
    every mistake is reported at once; without it the first one raises."""
    own = errors is None
    errors = errors or ScenarioErrorCollector()
    cfg = _parse_cfg(c, errors)
    if own:
        errors.raise_if_any()
    return cfg


def _given(c: dict[str, Any], key: str, default: Any) -> Any:
    """The spec's value when it gave one (even 0 or []), else the default."""
    v = c.get(key)
    return default if v is None else v


def _parse_cfg(c: dict[str, Any], errors: ScenarioErrorCollector) -> Cfg:
    # an explicit 0 or [] is an error, never replaced by the default
    adapters = list(_given(c, "adapters", [3, 4]))
    domains = list(_given(c, "domains", [5, 6]))
    if len(set(adapters)) != len(adapters) or not 1 <= len(adapters) <= 4:
        raise ScenarioError("constants.adapters", "1 to 4 distinct adapter numbers")
    if len(set(domains)) != len(domains) or not 1 <= len(domains) <= 4:
        raise ScenarioError("constants.domains", "1 to 4 distinct domain numbers")
    vms, vcpus, mdevs = int(_given(c, "vms", 1)), int(_given(c, "vcpus", 1)), int(_given(c, "mdevs", 1))
    for k, v, hi in (("vms", vms, 4), ("vcpus", vcpus, 2), ("mdevs", mdevs, 4)):
        if not 1 <= v <= hi:
            raise ScenarioError(f"constants.{k}", f"{k} must be 1..{hi}")
    created = c.get("created")
    created = list(range(mdevs)) if created is None else list(created)
    for i, m in enumerate(created):
        if not 0 <= m < mdevs:
            errors.errors.append(ScenarioError(f"constants.created.{i}", f"mdev index {m} outside 0..{mdevs - 1}"))
    created = [m for m in created if 0 <= m < mdevs]
    cfg = Cfg(adapters, domains, vms, vcpus, mdevs, created, {}, {}, [], [], [], [],
              bool(c.get("module_loaded", True) if c.get("module_loaded") is not None else True),
              bool(c.get("track_errno") if c.get("track_errno") is not None else True))
    _parse_matrix(list(c.get("matrix") or []), cfg, errors)
    for n, v in enumerate(c.get("no_crycb") or []):
        if not 0 <= v < vms:
            errors.errors.append(ScenarioError(f"constants.no_crycb.{n}", f"VM {v} outside 0..{vms - 1}"))
            continue
        cfg.no_crycb.append(v)
    for n, v in enumerate(c.get("apie_off") or []):
        if not 0 <= v < vms:
            errors.errors.append(ScenarioError(f"constants.apie_off.{n}", f"VM {v} outside 0..{vms - 1}"))
            continue
        cfg.apie_off.append(v)
    if c.get("ap_instructions") is not None:
        cfg.ap_instructions = bool(c.get("ap_instructions"))
    for n, entry in enumerate(c.get("attached") or []):
        with errors.collect():
            _parse_attached(entry, f"constants.attached.{n}", cfg)
    for name, vals, what in (("apmask", cfg.adapters, "adapter"), ("aqmask", cfg.domains, "domain"),
                             ("config_apm", cfg.adapters, "adapter"), ("config_aqm", cfg.domains, "domain")):
        raw = c.get(name)
        if raw is None:
            default = [] if name == "apmask" else list(range(len(vals)))
            getattr(cfg, name).extend(default)
            continue
        for i, x in enumerate(raw):
            with errors.collect():
                getattr(cfg, name).append(_index(vals, x, f"constants.{name}.{i}", what))
    return cfg


def _parse_attached(entry: str, key: str, cfg: Cfg) -> None:
    """One ``attached`` entry (same contract as ``_parse_matrix_entry``)."""
    mdevs, vms, created = cfg.mdevs, cfg.vms, cfg.created
    try:
        left, right = (x.strip() for x in entry.split("->"))
        m = _mdev_name(left, mdevs)
        if not right.startswith("kvm") or not right[3:].isdigit() or int(right[3:]) >= vms:
            raise ValueError(f"unknown VM {right!r} (kvm0..kvm{vms - 1})")
        v = int(right[3:])
    except ValueError as exc:
        raise ScenarioError(key, f"expected 'mdevN -> kvmV': {exc}") from None
    if m not in created:
        raise ScenarioError(key, f"mdev{m} is not created at start")
    if v in cfg.attached.values():
        raise ScenarioError(key, f"kvm{v} already has an mdev (one mdev per KVM)")
    cfg.attached[m] = v




def sysfs_hex(written: dict[str, str]) -> frozenset[str]:
    """The AP bus masks ("ap", "aq") whose values the spec wrote in hex (``written``: Scenario.written):
    the ``apmask``/``aqmask`` constants or an ``apmask_store``/``aqmask_store`` argument. Traces then show
    that mask as its sysfs attribute reads (apmask_show), else as a set of IDs."""
    out = set()
    for key, text in written.items():
        for kind in ("ap", "aq"):
            if text.startswith("0x") and (key.startswith(f"constants.{kind}mask[") or f".{kind}mask_store." in key):
                out.add(kind)
    return frozenset(out)


def queues_reached_twice(cfg: Cfg, threads: list[list[tuple[str, dict[str, Any]]]]) -> set[tuple[int, int]]:
    """The queues (adapter idx, domain idx) whose AP bus device two of the scenario's threads reach: a mask
    store's reprobe (its adapters or domains), a driver unbind, a configuration scan of an adapter. Their
    driver detach and attach then run under the driver core's device lock (ap_model/kernel/ap_bus.py)."""
    nA, nD = range(len(cfg.adapters)), range(len(cfg.domains))

    def ids(values: list[int], xs: Any) -> list[int]:
        xs = xs if isinstance(xs, list) else [xs]
        return [values.index(x) for x in xs if isinstance(x, int) and x in values]  # bad ones: check_args

    def reached(op: str, a: dict[str, Any]) -> set[tuple[int, int]]:
        if op in ("apmask_store", "aqmask_store"):
            vals = cfg.adapters if op == "apmask_store" else cfg.domains
            bits = ids(vals, a.get("reserve")) + ids(vals, a.get("release"))
            return {(i, j) for i in bits for j in nD} if op == "apmask_store" else {(i, j) for i in nA for j in bits}
        if op == "unbind_queue":
            return {(i, j) for i in ids(cfg.adapters, a.get("apid")) for j in ids(cfg.domains, a.get("apqi"))}
        if op in ("adapter_standby", "adapter_online"):
            return {(i, j) for i in ids(cfg.adapters, a.get("apid")) for j in nD}
        return set()

    per_thread = [set().union(*(reached(op, a) for op, a in calls)) for calls in threads]
    return {q for n, qs in enumerate(per_thread) for q in qs if any(q in other for other in per_thread[n + 1:])}
