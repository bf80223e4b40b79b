"""Versioned JSON report (``{"version": 1, ...}``) with a fixed key order.

Key order is part of the format: reports are diffed between designs and kept
as golden files, so dicts are built in documented order (docs/json-schema.md)
and never sorted or assembled from ``dataclasses.asdict``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from checker.lang.inputs import InputError, read_text
from checker.report.results import (
    CheckResult,
    LockCycle,
    LockEdge,
    PropertyResult,
    Stats,
    Trace,
    TraceStep,
)

REPORT_VERSION = 2  # 2: trace steps carry "label"; traces carry "spec", "design" and "digest" (replay)


MAX_REPORT_BYTES = 64 << 20  # a report with long traces is a few MB


class ReportError(ValueError):
    """The file or object is not a readable version-1 apcheck report."""


def _stats(stats: Stats) -> dict[str, Any]:
    return {
        "states": stats.states,
        "transitions": stats.transitions,
        "deadlock_states": stats.deadlock_states,
        "max_depth": stats.max_depth,
        # rounded so two runs of the same search differ only where timing really differs
        "seconds": round(stats.seconds, 3),
        "complete": stats.complete,
        "limit": stats.limit,
        "strategy": stats.strategy,
        "store": stats.store,
        "state_bits": stats.state_bits,
        "collision_probability": stats.collision_probability,
        "states_per_second": round(stats.states_per_second, 1),
        "peak_memory_mb": round(stats.peak_memory_mb, 1),
        "reductions": stats.reductions,
        "workers": stats.workers,
        "backend": stats.backend,
    }


def _step(step: TraceStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "thread": step.thread,
        "function": step.function,
        "label": step.label,
        "operation": step.operation,
        "action": step.action,
        "locks_held": list(step.locks_held),
        "changes": [{"field": f, "before": b, "after": a} for f, b, a in step.changes],
        "note": step.note,
    }


def trace_digest(trace: Trace) -> str:
    """sha256 over the trace's origin, threads and steps' identities (thread, function, label): a
    trace truncated, reordered or edited by hand no longer matches it, and replay refuses it."""
    steps = [(s.thread, s.function, s.label) for s in trace.steps]
    payload = json.dumps([trace.spec, trace.design, trace.threads, steps], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    return {
        "length": trace.length,
        "spec": trace.spec,
        "design": trace.design,
        "digest": trace_digest(trace),
        "threads": list(trace.threads),
        "actions": list(trace.actions),
        "steps": [_step(s) for s in trace.steps],
        "final": trace.final,
        "waits": list(trace.waits),
        "scenario": list(trace.scenario),
        "blocked": [{"thread": t, "function": f, "call": c, "holder": h} for t, f, c, h in trace.blocked],
        "initial": [{"field": f, "value": v} for f, v in trace.initial],
    }


def _property(prop: PropertyResult) -> dict[str, Any]:
    return {
        "name": prop.name,
        "kind": prop.kind,
        "status": prop.status,
        "detail": prop.detail,
        "description": prop.description,
        "source": prop.source,
        "trace": None if prop.trace is None else trace_to_dict(prop.trace),
    }


def _edge(edge: LockEdge) -> dict[str, Any]:
    return {
        "src": edge.src,
        "dst": edge.dst,
        "src_mode": edge.src_mode,
        "dst_mode": edge.dst_mode,
        "thread": edge.thread,
        "function": edge.function,
        "operation": edge.operation,
        "src_function": edge.src_function,
    }


def _cycle(cycle: LockCycle) -> dict[str, Any]:
    # Full edge objects rather than indices: a cycle reads on its own, and
    # filtering "edges" in a consumer cannot silently re-point a cycle.
    return {
        "locks": list(cycle.locks),
        "reachable": cycle.reachable,
        "edges": [_edge(e) for e in cycle.edges],
        "scenario": list(cycle.scenario),
    }


def result_to_dict(result: CheckResult) -> dict[str, Any]:
    return {
        "version": REPORT_VERSION,
        "spec": result.spec,
        "name": result.name or result.spec,
        "design": result.design,
        "result": result.result,
        "stats": _stats(result.stats),
        "properties": [_property(p) for p in result.properties],
        "lock_order": {
            "classes": list(result.lock_classes),
            "edges": [_edge(e) for e in result.lock_edges],
            "cycles": [_cycle(c) for c in result.cycles],
        },
    }


def result_to_json(result: CheckResult) -> str:
    return json.dumps(result_to_dict(result), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- reading


def _field(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """d[key] checked for type, so a hand-edited report fails with a path, not a KeyError."""
    if key not in d:
        raise ReportError(f"{where}: missing key {key!r}")
    value = d[key]
    # bool is an int subclass; a report saying "index": true is corrupt, not step 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ReportError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _str_list(d: dict[str, Any], key: str, where: str) -> list[str]:
    items = _field(d, key, list, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ReportError(f"{where}.{key}[{i}]: expected str, got {type(item).__name__}")
    return list(items)


def _step_from_dict(d: Any, where: str) -> TraceStep:
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected an object, got {type(d).__name__}")
    changes: list[tuple[str, str, str]] = []
    for i, c in enumerate(_field(d, "changes", list, where)):
        cw = f"{where}.changes[{i}]"
        if not isinstance(c, dict):
            raise ReportError(f"{cw}: expected an object, got {type(c).__name__}")
        changes.append((_field(c, "field", str, cw), _field(c, "before", str, cw), _field(c, "after", str, cw)))
    return TraceStep(
        index=_field(d, "index", int, where),
        thread=_field(d, "thread", str, where),
        function=_field(d, "function", str, where),
        label=_field(d, "label", str, where),
        operation=_field(d, "operation", str, where),
        action=_field(d, "action", str, where),
        locks_held=_str_list(d, "locks_held", where),
        changes=changes,
        note=_field(d, "note", str, where),
    )


def _blocked_from_dict(d: Any, where: str) -> tuple[str, str, str, str]:
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected an object, got {type(d).__name__}")
    return (_field(d, "thread", str, where), _field(d, "function", str, where), _field(d, "call", str, where),
            _field(d, "holder", str, where))


def _initial_from_dict(d: Any, where: str) -> tuple[str, str]:
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected an object, got {type(d).__name__}")
    return _field(d, "field", str, where), _field(d, "value", str, where)


def trace_from_dict(d: dict[str, Any], where: str = "trace") -> Trace:
    """Inverse of the "trace" object of a report; ``length`` is derived, so only checked."""
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected an object, got {type(d).__name__}")
    actions = _field(d, "actions", list, where)
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in actions):
        raise ReportError(f"{where}.actions: expected a list of ints")
    steps = [_step_from_dict(s, f"{where}.steps[{i}]") for i, s in enumerate(_field(d, "steps", list, where))]
    trace = Trace(
        threads=_str_list(d, "threads", where),
        steps=steps,
        actions=list(actions),
        final=_field(d, "final", str, where),
        waits=_str_list(d, "waits", where),
        scenario=_str_list(d, "scenario", where),
        spec=_field(d, "spec", str, where),
        design=_field(d, "design", str, where),
    )
    trace.blocked = [_blocked_from_dict(b, f"{where}.blocked[{i}]") for i, b in enumerate(d.get("blocked", []))]
    trace.initial = [_initial_from_dict(v, f"{where}.initial[{i}]") for i, v in enumerate(d.get("initial", []))]
    if "length" in d and d["length"] != trace.length:
        raise ReportError(f"{where}.length: says {d['length']!r} but there are {trace.length} steps")
    digest = _field(d, "digest", str, where)
    if digest != trace_digest(trace):
        raise ReportError(f"{where}.digest: does not match the steps (the trace was truncated, reordered "
                          "or edited)")
    return trace


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a JSON report written by this format version; anything else is a ValueError."""
    try:
        text = read_text(str(path), MAX_REPORT_BYTES, "report")
    except InputError as e:
        raise ReportError(f"{path}:{e.line}:{e.col}: not a JSON report ({e.message})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not a JSON report ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ReportError(f"{path}: not a JSON report (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not an apcheck report (top level is a {type(data).__name__}, expected an object)")
    if "version" not in data:
        raise ReportError(f'{path}: not an apcheck report (no "version" key)')
    version = data["version"]
    if type(version) is not int or version != REPORT_VERSION:
        raise ReportError(f"unsupported report version {version!r} (this apcheck reads version {REPORT_VERSION})")
    return data
