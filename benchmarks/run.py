#!/usr/bin/env python3
"""Benchmark apcheck against shared/benchmarks/ref_bfs.py on the lock-program models.

    cd /work/main && PYTHONPATH=. python3 benchmarks/run.py [--models phil_N12,phil_N14]
        [--shared DIR] [--repeat K] [--json FILE] [--timeout SECONDS]

Each (model, tool) run and each idle baseline is its own interpreter
(``benchmarks/child.py``), so peak RSS is per tool. Both tools' counts are
checked against the ground truth of shared/benchmarks/README.md (recorded in
examples/ground_truth.json): any mismatch or failed child exits 1. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from tabulate import tabulate

JSON_VERSION = 1
TOOLS = ("apcheck", "ref")
DEFAULT_MODELS = ("phil_N12", "phil_N14")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _ground_truth() -> dict[str, tuple[int, int, int, int]]:
    """examples/ground_truth.json (shared/benchmarks/README.md "Ground truth": SPIN, Rumur and ref_bfs.py
    agree), the one file tests and benchmarks read: model -> (states, transitions, deadlocks, shortest)."""
    with open(os.path.join(REPO, "examples", "ground_truth.json"), encoding="utf-8") as fh:
        models = json.load(fh)["models"]
    return {k: (v["states"], v["transitions"], v["deadlock_states"], v["shortest_trace"]) for k, v in models.items()}


GROUND_TRUTH: dict[str, tuple[int, int, int, int]] = _ground_truth()
STARVED = 1.15  # wall clock / CPU time above this: the run waited for a CPU (shared machine)
NOISE_MB = 1.0  # peak-RSS growth below this is run-to-run noise: bytes/state not meaningful
COUNT_KEYS = ("states", "transitions", "deadlocks", "shortest")

CHILD = os.path.join(HERE, "child.py")


class BenchError(Exception):
    """A child failed or a count differs from the ground truth: exit 1."""


def find_shared(start: str) -> str | None:
    """The first ``shared/benchmarks`` directory found walking up from ``start``."""
    d = os.path.abspath(start)
    while True:
        cand = os.path.join(d, "shared", "benchmarks")
        if os.path.isdir(cand):
            return cand
        up = os.path.dirname(d)
        if up == d:
            return None
        d = up


def run_child(tool: str, mode: str, ref_py: str, model_path: str | None, timeout: float | None) -> dict[str, Any]:
    cmd = [sys.executable, CHILD, tool, mode, REPO, ref_py] + ([model_path] if model_path else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{tool} {mode} {model_path or ''}: timed out after {timeout} s") from exc
    wall = time.perf_counter() - t0
    if cp.returncode != 0:
        raise BenchError(f"{tool} {mode} {model_path or ''}: exit {cp.returncode}\n{cp.stderr.strip()}")
    lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"{tool} {mode}: no JSON report on stdout\n{cp.stdout}{cp.stderr}")
    data: dict[str, Any] = json.loads(lines[-1])
    data["wall_seconds"] = wall
    return data


def verify(model: str, tool: str, got: dict[str, Any]) -> list[str]:
    want = dict(zip(COUNT_KEYS, GROUND_TRUTH[model]))
    bad = [f"{model}: {tool}: {k} = {got.get(k)!r}, ground truth {v!r}" for k, v in want.items() if got.get(k) != v]
    if got.get("complete") is False:
        bad.append(f"{model}: {tool}: search incomplete")
    return bad


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def measure(
    models: list[str], shared: str, repeat: int, timeout: float | None, log: Any = sys.stderr
) -> dict[str, Any]:
    ref_py = os.path.join(shared, "ref_bfs.py")
    load_start = os.getloadavg()[0]
    mismatches: list[str] = []
    # Idle interpreters with the same imports; repeated like the runs, median kept.
    base_runs: dict[str, list[int]] = {t: [] for t in TOOLS}
    for _ in range(repeat):
        for tool in TOOLS:
            base_runs[tool].append(run_child(tool, "baseline", ref_py, None, timeout)["peak_kb"])
    baseline_kb = {t: median([float(x) for x in v]) for t, v in base_runs.items()}
    print(
        "baseline peak RSS (idle, same imports): " + ", ".join(f"{t} {baseline_kb[t] / 1024:.1f} MB" for t in TOOLS),
        file=log,
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for model in models:
        path = os.path.join(shared, "models", model + ".json")
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TOOLS}
        for k in range(repeat):
            # alternate the order so slow drift on a shared machine hits both tools alike
            for tool in TOOLS if k % 2 == 0 else TOOLS[::-1]:
                r = run_child(tool, "run", ref_py, path, timeout)
                mismatches += verify(model, tool, r)
                runs[tool].append(r)
                print(
                    f"{model} {tool} run {k + 1}/{repeat}: {r['states']:,} states, {r['seconds']:.2f} s, "
                    f"peak {r['peak_kb'] / 1024:.0f} MB",
                    file=log,
                    flush=True,
                )
        for tool in TOOLS:
            rs = runs[tool]
            first = rs[0]
            peak_kb = median([float(r["peak_kb"]) for r in rs])
            secs = median([float(r["seconds"]) for r in rs])
            states = first["states"]
            rows.append(
                {
                    "model": model,
                    "tool": tool,
                    "states": states,
                    "transitions": first["transitions"],
                    "deadlocks": first["deadlocks"],
                    "shortest": first["shortest"],
                    "seconds": secs,
                    "cpu_seconds": median([float(r["cpu_seconds"]) for r in rs]),
                    "search_seconds": median([float(r["search_seconds"]) for r in rs]),
                    "wall_seconds": median([float(r["wall_seconds"]) for r in rs]),
                    "states_per_second": states / secs if secs > 0 else 0.0,
                    "peak_mb": peak_kb / 1024,
                    "baseline_mb": baseline_kb[tool] / 1024,
                    "bytes_per_state": (peak_kb - baseline_kb[tool]) * 1024 / states if states else 0.0,
                    "runs": [
                        {
                            "seconds": r["seconds"],
                            "cpu_seconds": r["cpu_seconds"],
                            "search_seconds": r["search_seconds"],
                            "peak_mb": r["peak_kb"] / 1024,
                        }
                        for r in rs
                    ],
                }
            )
    ratios = []
    for model in models:
        a = next(r for r in rows if r["model"] == model and r["tool"] == "apcheck")
        b = next(r for r in rows if r["model"] == model and r["tool"] == "ref")
        meaningful = min(a["peak_mb"] - a["baseline_mb"], b["peak_mb"] - b["baseline_mb"]) >= NOISE_MB
        ratios.append(
            {
                "model": model,
                "speedup": b["seconds"] / a["seconds"] if a["seconds"] > 0 else 0.0,
                "cpu_speedup": b["cpu_seconds"] / a["cpu_seconds"] if a["cpu_seconds"] > 0 else 0.0,
                "memory_ratio": a["peak_mb"] / b["peak_mb"] if b["peak_mb"] > 0 else 0.0,
                "bytes_per_state_ratio": (a["bytes_per_state"] / b["bytes_per_state"] if meaningful else None),
                "goal_speed": a["seconds"] <= b["seconds"],
                "goal_memory": a["bytes_per_state"] < 100.0 if a["peak_mb"] - a["baseline_mb"] >= NOISE_MB else None,
            }
        )
    return {
        "version": JSON_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "shared": shared,
        "repeat": repeat,
        "statistic": "median" if repeat > 1 else "single run",
        "baseline_mb": {t: baseline_kb[t] / 1024 for t in TOOLS},
        "load_average": {"start": load_start, "end": os.getloadavg()[0], "cpus": os.cpu_count()},
        "ground_truth": {m: dict(zip(COUNT_KEYS, GROUND_TRUTH[m])) for m in models},
        "results": rows,
        "ratios": ratios,
        "mismatches": mismatches,
        "ok": not mismatches,
    }


def _bps(r: dict[str, Any]) -> str:
    """bytes/state, or "-" when the growth over the idle baseline is below measurement noise."""
    return f"{r['bytes_per_state']:.1f}" if r["peak_mb"] - r["baseline_mb"] >= NOISE_MB else "-"


def _yes_no(x: bool | None) -> str:
    return "-" if x is None else "yes" if x else "NO"


def render(data: dict[str, Any]) -> str:
    table = [
        [
            r["model"],
            r["tool"],
            f"{r['states']:,}",
            f"{r['transitions']:,}",
            f"{r['seconds']:.2f}",
            f"{r['states_per_second']:,.0f}",
            f"{r['peak_mb']:.1f}",
            _bps(r),
        ]
        for r in data["results"]
    ]
    heads = ["model", "tool", "states", "transitions", "seconds", "states/s", "peak MB", "bytes/state"]
    out = [tabulate(table, headers=heads, colalign=("left", "left") + ("right",) * 6, disable_numparse=True), ""]
    rt = [
        [
            x["model"],
            f"{x['speedup']:.2f}",
            f"{x['cpu_speedup']:.2f}",
            f"{x['memory_ratio']:.2f}",
            "-" if x["bytes_per_state_ratio"] is None else f"{x['bytes_per_state_ratio']:.2f}",
            "yes" if x["goal_speed"] else "NO",
            _yes_no(x["goal_memory"]),
        ]
        for x in data["ratios"]
    ]
    heads = [
        "model",
        "speedup (ref s / apcheck s)",
        "same, CPU s",
        "peak MB apcheck/ref",
        "bytes/state apcheck/ref",
        "goal: as fast as ref",
        "goal: < 100 B/state",
    ]
    out.append(tabulate(rt, headers=heads, colalign=("left",) + ("right",) * 6, disable_numparse=True))
    stat = f"median of {data['repeat']} runs" if data["repeat"] > 1 else "1 run"
    base = ", ".join(f"{t} {mb:.1f} MB" for t, mb in data["baseline_mb"].items())
    la = data["load_average"]
    out.append(
        f"\n{stat}; seconds = model load + search + analysis, in-process, wall clock; "
        f"bytes/state = (peak RSS - idle baseline [{base}]) / states"
    )
    # A run that waited for a CPU shows wall clock well above its CPU time.
    starved = [r for r in data["results"] if r["seconds"] > 0.5 and r["seconds"] > STARVED * r["cpu_seconds"]]
    loads = f"load average {la['start']:.1f} -> {la['end']:.1f} on {la['cpus']} CPUs"
    if starved:
        worst = max(r["seconds"] / r["cpu_seconds"] for r in starved)
        out.append(
            f"warning: {loads}; {len(starved)} row(s) ran up to {worst:.1f}x longer than their CPU time: other jobs "
            "shared the CPUs, so wall-clock figures are inflated; compare the CPU-time speedup"
        )
    else:
        out.append(f"{loads}; wall clock within {STARVED:.2f}x of CPU time in every row")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated model names from shared/benchmarks/models (default: %(default)s)",
    )
    ap.add_argument("--shared", help="the shared/benchmarks directory (default: found walking up from the repo)")
    ap.add_argument("--repeat", type=int, default=1, metavar="K", help="run each K times, report the median")
    ap.add_argument("--json", metavar="FILE", help=f"also write the results as JSON (version {JSON_VERSION})")
    ap.add_argument("--timeout", type=float, help="seconds allowed per child run")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    shared = args.shared or find_shared(REPO)
    if shared is None:
        ap.error(f"no shared/benchmarks directory found walking up from {REPO}; pass --shared DIR")
    if not os.path.isfile(os.path.join(shared, "ref_bfs.py")):
        ap.error(f"{shared}: no ref_bfs.py here; --shared must name the shared/benchmarks directory")
    shared = os.path.abspath(shared)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        ap.error("--models: no model given")
    for m in models:
        if m not in GROUND_TRUTH:
            ap.error(f"--models: no ground truth for {m!r}; known: {', '.join(GROUND_TRUTH)}")
        if not os.path.isfile(os.path.join(shared, "models", m + ".json")):
            ap.error(f"--models: {m}.json not found in {os.path.join(shared, 'models')}")
    try:
        data = measure(models, shared, args.repeat, args.timeout)
    except BenchError as exc:
        print(f"benchmarks/run.py: FAILED: {exc}", file=sys.stderr)
        return 1
    print(render(data))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
    if data["mismatches"]:
        print("\nbenchmarks/run.py: FAILED: counts differ from the ground truth:", file=sys.stderr)
        for line in data["mismatches"]:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
