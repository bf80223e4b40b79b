"""The golden manifest: expected counts and verdicts of every spec (TLC's habit).

``specs/golden.json`` maps a spec path (relative to the repository root) to
its expected states, transitions, deadlock states, max depth, overall result
and, per property, ``[status, trace length or null]``, of the unreduced search
(``--reduction none``: the counts SPIN and Rumur agree on), and under
``"reduced"`` the same summary for the default reductions (checker.search.reduce).
Tests compare fresh runs against both, so any drift in the engine, a model or
a reduction fails CI.

    python -m checker.cli.golden update specs/v15-lockdep.yaml ...   # record
    python -m checker.cli.golden check                                # compare all
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from checker.report.results import CheckResult
from checker.spec.options import Options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(ROOT, "specs", "golden.json")


def run_spec(path: str, **overrides: Any) -> CheckResult:
    """Load, build and check a spec with its own ``check:`` options (plus overrides)."""
    from checker.search.run import build_program, check_program
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(path, default_registry())
    program = build_program(loaded.design, loaded.scenario)
    opts = Options(quiet=True).with_overrides(**loaded.check_options)
    opts = opts.with_overrides(properties=loaded.only or None, skip=loaded.skip or None, **overrides)
    return check_program(program, opts, loaded.scenario.name, loaded.design.name)


def summarize(result: CheckResult) -> dict[str, Any]:
    st = result.stats
    return {
        "states": st.states,
        "transitions": st.transitions,
        "deadlock_states": st.deadlock_states,
        "max_depth": st.max_depth,
        "result": result.result,
        "properties": {p.name: [p.status, p.trace.length if p.trace else None] for p in result.properties},
    }


def load_manifest(path: str = MANIFEST) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"version": 1, "specs": {}}
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    if data.get("version") != 1:
        raise ValueError(f"{path}: unsupported manifest version {data.get('version')}")
    return data


def save_manifest(data: dict[str, Any], path: str = MANIFEST) -> None:
    data["specs"] = dict(sorted(data["specs"].items()))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def _rel(path: str) -> str:
    return os.path.relpath(os.path.abspath(path), ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("update", "check"):
        print(__doc__)
        return 2
    data = load_manifest()
    specs = argv[1:] or sorted(data["specs"])
    bad = 0
    for spec in specs:
        t0 = time.perf_counter()
        path = os.path.join(ROOT, spec) if not os.path.isabs(spec) else spec
        got = summarize(run_spec(path, reduction="none"))
        got["reduced"] = summarize(run_spec(path))
        key = _rel(spec if os.path.isabs(spec) else os.path.join(ROOT, spec))
        secs = time.perf_counter() - t0
        if argv[0] == "update":
            old = data["specs"].get(key, {})
            got["seconds"] = round(secs, 1)
            got["slow"] = old.get("slow", secs > 20)
            data["specs"][key] = got
            print(f"{key}: {got['states']} states, {got['result']} ({secs:.1f}s)")
        else:
            want = {k: v for k, v in data["specs"].get(key, {}).items() if k not in ("seconds", "slow")}
            same = want == got
            bad += not same
            print(f"{key}: {'ok' if same else 'DIFFERS'} ({secs:.1f}s)")
            if not same:
                print(f"  expected {json.dumps(want)}\n  got      {json.dumps(got)}")
    if argv[0] == "update":
        save_manifest(data)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
