"""Compare designs: one verdict matrix over several specs checked with the same options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from checker.report.results import VIOLATED, CheckResult, PropertyResult


@dataclass
class Comparison:
    results: list[CheckResult]
    columns: list[str]  # one per result: design name (spec name when designs repeat)
    rows: list[str]  # property names, in order of first appearance


def compare(results: list[CheckResult]) -> Comparison:
    designs = [r.design for r in results]
    columns = designs if len(set(designs)) == len(designs) else [f"{r.design} ({r.spec})" for r in results]
    rows: list[str] = []
    for r in results:
        for p in r.properties:
            if p.name not in rows:
                rows.append(p.name)
    return Comparison(results, columns, rows)


def _prop(r: CheckResult, name: str) -> PropertyResult | None:
    return next((p for p in r.properties if p.name == name), None)


def _cell(p: PropertyResult | None) -> str:
    if p is None:
        return "-"
    return f"{p.status} ({p.trace.length})" if p.trace else p.status


def differing(c: Comparison) -> list[str]:
    out = []
    for name in c.rows:
        statuses = {(_prop(r, name) or PropertyResult(name, "", "-", "")).status for r in c.results}
        if len(statuses) > 1:
            out.append(name)
    return out


def edges_only_in(c: Comparison) -> dict[str, list[tuple[str, str]]]:
    sets = [{(e.src, e.dst) for e in r.lock_edges} for r in c.results]
    out: dict[str, list[tuple[str, str]]] = {}
    for col, mine in zip(c.columns, sets):
        others: set[tuple[str, str]] = set().union(*[s for s in sets if s is not mine]) if len(sets) > 1 else set()
        out[col] = sorted(mine - others)
    return out


def render_text(c: Comparison) -> str:
    from checker.report.report_text import render_trace

    lines = []
    table = [[name] + [_cell(_prop(r, name)) for r in c.results] for name in c.rows]
    lines.append(tabulate(table, headers=["property"] + c.columns, tablefmt="simple"))
    lines.append("")
    stats = [
        ["states"] + [f"{r.stats.states:,}" for r in c.results],
        ["transitions"] + [f"{r.stats.transitions:,}" for r in c.results],
        ["seconds"] + [f"{r.stats.seconds:.2f}" for r in c.results],
        ["search"] + ["complete" if r.stats.complete else f"BOUNDED ({r.stats.limit})" for r in c.results],
    ]
    lines.append(tabulate(stats, headers=[""] + c.columns, tablefmt="simple"))
    lines.append("")
    lines.append("lock-order edges only one design has:")
    any_edge = False
    for col, edges in edges_only_in(c).items():
        for src, dst in edges:
            any_edge = True
            lines.append(f"  {col}: {src} -> {dst}")
    if not any_edge:
        lines.append("  (none: the designs take the same lock orders)")
    for name in differing(c):
        for col, r in zip(c.columns, c.results):
            p = _prop(r, name)
            if p is not None and p.status == VIOLATED and p.trace is not None:
                lines.append("")
                lines.append(f"== {name}: {col} {p.status}: {p.detail} ==")
                lines.append(render_trace(p.trace))
    return "\n".join(lines) + "\n"


def to_dict(c: Comparison) -> dict[str, Any]:
    from checker.report.report_json import trace_to_dict

    diffs = []
    for name in differing(c):
        for col, r in zip(c.columns, c.results):
            p = _prop(r, name)
            if p is not None and p.status == VIOLATED:
                diffs.append({"property": name, "design": col, "detail": p.detail,
                              "trace": trace_to_dict(p.trace) if p.trace else None})
    return {
        "version": 1,
        "designs": [{"name": col, "spec": r.spec, "design": r.design, "result": r.result,
                     "stats": {"states": r.stats.states, "transitions": r.stats.transitions,
                               "seconds": round(r.stats.seconds, 3), "complete": r.stats.complete}}
                    for col, r in zip(c.columns, c.results)],
        "rows": [{"property": name,
                  "verdicts": {col: (p.status if (p := _prop(r, name)) else None)
                               for col, r in zip(c.columns, c.results)},
                  "trace_lengths": {col: (p.trace.length if (p := _prop(r, name)) and p.trace else None)
                                    for col, r in zip(c.columns, c.results)}}
                 for name in c.rows],
        "edges_only_in": {col: [list(e) for e in edges] for col, edges in edges_only_in(c).items()},
        "differences": diffs,
    }


def to_json(c: Comparison) -> str:
    return json.dumps(to_dict(c), indent=2, ensure_ascii=False) + "\n"
