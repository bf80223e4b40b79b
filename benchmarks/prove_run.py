#!/usr/bin/env python3
"""Benchmark the parametric prover: all-sizes proofs of vfio_ap designs, each in its own process.

    PYTHONPATH=. python3 benchmarks/prove_run.py [--runs A,B|all] [--json FILE]

Each run is ``python -m checker prove --parametric --all-sizes SPEC --timeout T --format json`` in a
child process; the runner reads the child's own resource usage (``os.wait4``: CPU seconds and peak RSS)
and its JSON report, and prints per run: the rows PROVED out of all; over the proof attempts the rows
report (one per distinct detail: the rows of a joint proof share one), the consecution checks, how many
of them an earlier attempt had refuted already, the seconds they took and the checks solved per second;
wall and CPU seconds of the whole command (the build and the cross-checks included) and peak memory. A run whose
rows are not all PROVED, or that fails, exits 1. There is no external tool to compare with (TLC, SPIN and
Rumur prove nothing for every number of guests); the figures are compared across versions of apcheck.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from tabulate import tabulate

JSON_VERSION = 1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (spec, timeout per check in seconds); "long" runs only with --runs all or by name
RUNS: dict[str, tuple[str, int]] = {
    "allsizes-mainline": ("specs/allsizes-mainline.yaml", 20),
    "allsizes-unbind-fds": ("benchmarks/proofs/allsizes-unbind-fds.yaml", 20),
}
LONG_RUNS: dict[str, tuple[str, int]] = {
    "parametric-mainline": ("specs/parametric-mainline.yaml", 20),
    "parametric-mainline-masks": ("specs/parametric-mainline-masks.yaml", 40),
}
CHECKS = re.compile(r"\((\d+) consecution checks(?:, (\d+) of them refuted in an earlier attempt)?\)")


def checks_in(detail: str) -> tuple[int, int]:
    """(consecution checks, how many of them an earlier attempt had refuted) in a row's detail; (0, 0): none."""
    m = CHECKS.search(detail)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)


def run_one(name: str, spec: str, timeout: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "checker", "prove", "--parametric", "--all-sizes", spec,
               "--timeout", str(timeout), "--format", "json", "--output", out]
        env = dict(os.environ, PYTHONPATH=ROOT)
        t0 = time.monotonic()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        err = child.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        report: dict[str, Any] = {"prove": []}
        if os.path.exists(out):
            with open(out) as fh:
                report = json.load(fh)
    rows = report.get("prove", [])
    # one proof attempt per distinct detail (the rows of a joint proof share theirs)
    attempts = {r["detail"]: r for r in rows}.values()
    checks = [checks_in(r["detail"]) for r in attempts]
    return {"run": name, "spec": spec, "timeout": timeout, "exit": child.returncode,
            "proved": sum(1 for r in rows if r["status"] == "PROVED"), "rows": len(rows),
            "checks": sum(n for n, _ in checks), "reused": sum(k for _, k in checks),
            "proving_seconds": round(sum(r["seconds"] for r in attempts), 2),
            "seconds": round(wall, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_mb": round(usage.ru_maxrss / 1024, 1), "stderr": err.strip()[-500:]}


def render(results: list[dict[str, Any]]) -> str:
    head = ["run", "PROVED", "checks", "reused", "proving s", "checks/s", "wall s", "CPU s", "peak MB", "exit"]
    table = [[r["run"], f"{r['proved']}/{r['rows']}", r["checks"], r["reused"], r["proving_seconds"],
              round((r["checks"] - r["reused"]) / r["proving_seconds"], 1) if r["proving_seconds"] else "",
              r["seconds"], r["cpu_seconds"], r["peak_mb"], r["exit"]] for r in results]
    return tabulate(table, head)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", default=",".join(RUNS),
                    help=f"comma-separated runs, or all (default {','.join(RUNS)}; long: {','.join(LONG_RUNS)})")
    ap.add_argument("--json", metavar="FILE", help=f"also write the results as JSON (version {JSON_VERSION})")
    args = ap.parse_args(argv)
    every = {**RUNS, **LONG_RUNS}
    names = list(every) if args.runs == "all" else [x for x in args.runs.split(",") if x]
    unknown = [x for x in names if x not in every]
    if unknown:
        ap.error(f"unknown run(s): {', '.join(unknown)} (known: {', '.join(every)})")
    results = []
    for name in names:
        print(f"[prove_run] {name} ...", file=sys.stderr, flush=True)
        results.append(run_one(name, *every[name]))
    print(render(results))
    failed = [r for r in results if r["exit"] != 0 or r["proved"] != r["rows"] or not r["rows"]]
    for r in failed:
        print(f"{r['run']}: not every row PROVED (exit {r['exit']}): {r['stderr']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"version": JSON_VERSION, "runs": results}, fh, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
