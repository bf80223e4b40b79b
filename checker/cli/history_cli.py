"""``apcheck history [MANIFEST]``: a design history as a regression suite.

The manifest (default ``specs/history/manifest.yml``, safe YAML, no code) lists fixes, each with the property the
fix is about and two specs: on the design before the fix (the property must be VIOLATED, the trace tells
the commit's story) and after it (the property must HOLD). Fixes the model cannot express are listed with
the reason. Exit 0 when every row behaves, 1 when one does not, 2 on a bad manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import click
import yaml
from tabulate import tabulate

from checker.report.results import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION

ROW_KEYS = ("id", "title", "commit", "property", "before", "after")


@dataclass
class Verdict:
    spec: str
    design: str
    status: str  # the property's status
    trace: int | None  # its trace length
    states: int


@dataclass
class Row:
    fix: dict[str, str]
    before: Verdict
    after: Verdict

    @property
    def ok(self) -> bool:
        return self.before.status == "VIOLATED" and self.after.status == "HOLDS"


class ManifestError(ValueError):
    pass


def load_manifest(path: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(fixes, not_expressible); spec paths made relative to the manifest's directory."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as e:
        raise ManifestError(f"{path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("fixes"), list):
        raise ManifestError(f"{path}: expected a mapping with a 'fixes' list")
    base = os.path.dirname(os.path.abspath(path))
    fixes = []
    for n, fix in enumerate(data["fixes"]):
        missing = [k for k in ROW_KEYS if not isinstance(fix, dict) or not isinstance(fix.get(k), str)]
        if missing:
            raise ManifestError(f"{path}: fixes.{n}: missing or not a string: {', '.join(missing)}")
        fixes.append({**fix, "before": os.path.join(base, fix["before"]), "after": os.path.join(base, fix["after"])})
    rest = data.get("not_expressible") or []
    if not isinstance(rest, list) or not all(isinstance(r, dict) and isinstance(r.get("reason"), str)
                                             and isinstance(r.get("title"), str) for r in rest):
        raise ManifestError(f"{path}: not_expressible: a list of {{title, reason}} mappings")
    return fixes, rest


def verdict(spec: str, prop: str) -> Verdict:
    from checker.cli.golden import run_spec

    res = run_spec(spec)
    found = [p for p in res.properties if p.name == prop]
    if not found:
        raise ManifestError(f"{spec}: no property {prop!r}")
    p = found[0]
    return Verdict(spec, res.design, p.status, p.trace.length if p.trace else None, res.stats.states)


def run(path: str) -> tuple[list[Row], list[dict[str, str]]]:
    fixes, rest = load_manifest(path)
    rows = [Row(f, verdict(f["before"], f["property"]), verdict(f["after"], f["property"])) for f in fixes]
    return rows, rest


def format_table(rows: list[Row], rest: list[dict[str, str]]) -> str:
    def cell(v: Verdict) -> str:
        tl = f", trace {v.trace}" if v.trace is not None else ""
        return f"{v.design}: {v.status}{tl}"

    table = [[r.fix["id"], r.fix["commit"], r.fix["property"], cell(r.before), cell(r.after),
              "ok" if r.ok else "UNEXPECTED"] for r in rows]
    out = [tabulate(table, headers=["fix", "commit", "property", "before", "after", ""]), ""]
    for r in rows:
        out.append(f"{r.fix['id']}: {r.fix['title']}")
    if rest:
        out += ["", "Not expressible in the model:"]
        out += [f"- {r['title']}{' (' + r['commit'] + ')' if r.get('commit') else ''}: {r['reason']}" for r in rest]
    return "\n".join(out)


def register(group: click.Group) -> None:
    @group.command(name="history")
    @click.argument("manifest", default=os.path.join("specs", "history", "manifest.yml"))
    def history_cmd(manifest: str) -> int:
        """Each fix of a design history: VIOLATED before it, HOLDS after it (specs/history/manifest.yml)."""
        try:
            rows, rest = run(manifest)
        except ManifestError as e:
            click.echo(f"apcheck: error: {e}", err=True)
            return EXIT_USAGE
        click.echo(format_table(rows, rest))
        return EXIT_OK if all(r.ok for r in rows) else EXIT_VIOLATION


__all__ = ["Row", "Verdict", "format_table", "load_manifest", "register", "run"]

