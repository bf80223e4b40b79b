#!/usr/bin/env python3
"""Benchmark apcheck (Python core and native core) against ref_bfs.py, SPIN and Rumur, in one run.

    PYTHONPATH=. python3 benchmarks/run.py [--quick] [--models phil_N12,phil_N14] [--scale all|none|A,B]
        [--shared DIR] [--repeat K] [--json FILE] [--timeout S] [--python-timeout S] [--no-external]

Lock programs (shared/benchmarks/models): apcheck-native, apcheck-python, the plain
Python reference search ref_bfs.py, SPIN and Rumur (built here; installed with apt-get
if missing and possible), every count checked against the ground truth. Scale suite
(benchmarks/scale/*.yaml, vfio_ap scenarios): apcheck-native and apcheck-python with
no reduction, and apcheck-reduced (native, the default reductions: its verdicts must equal
the unreduced ones). Each run is its own process (benchmarks/child.py, or /usr/bin/time for
SPIN/Rumur), so peak RSS is per run. Any count mismatch or failed run exits 1.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import external  # benchmarks/ is not a package: imported from its directory

JSON_VERSION = 2
APCHECK = ("apcheck-native", "apcheck-python")
SCALE_TOOLS = ("apcheck-native", "apcheck-reduced", "apcheck-python")
SIX_THREAD_GOAL_S = 60.0  # the six-thread scenario, default reductions, complete
LOCK_TOOLS = (*APCHECK, "ref", "spin", "rumur")
DEFAULT_MODELS = ("phil_N12", "phil_N14")
QUICK_MODELS = ("phil_N12",)
QUICK_MAX_STATES = 200_000
GOAL_RATE = 500_000  # states/s of the unreduced native search on the vfio_ap scale suite

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


def run_child(tool: str, mode: str, ref_py: str, model_path: str | None, timeout: float | None,
              extra: list[str] | None = None, cache: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, CHILD, tool, mode, REPO, ref_py] + ([model_path] if model_path else []) + (extra or [])
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache is not None:
        env["APCHECK_CACHE_DIR"] = cache
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
    bad = [f"{model}: {tool}: {k} = {got.get(k)!r}, ground truth {v!r}" for k, v in want.items()
           if got.get(k) != v and not (k == "shortest" and got.get(k) is None and tool in ("spin", "rumur"))]
    if got.get("complete") is False:
        bad.append(f"{model}: {tool}: search incomplete")
    return bad


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _row(suite: str, model: str, tool: str, rs: list[dict[str, Any]], baseline_kb: float | None,
         build_seconds: float | None = None) -> dict[str, Any]:
    first = rs[0]
    secs = median([float(r["seconds"]) for r in rs])
    search = median([float(r["search_seconds"]) for r in rs])
    peak_kb = median([float(r["peak_kb"]) for r in rs])
    states = int(first["states"])
    grown = baseline_kb is not None and (peak_kb - baseline_kb) / 1024 >= NOISE_MB
    return {
        "suite": suite, "model": model, "tool": tool,
        **{k: first.get(k) for k in ("states", "transitions", "deadlocks", "shortest", "complete", "limit")},
        "seconds": secs,
        "cpu_seconds": median([float(r["cpu_seconds"]) for r in rs]),
        "search_seconds": search,
        "build_seconds": build_seconds if build_seconds is not None
        else median([float(r.get("build_seconds", 0.0)) for r in rs]),
        "states_per_second": states / secs if secs > 0 else 0.0,
        "search_states_per_second": states / search if search > 0 else 0.0,
        "peak_mb": peak_kb / 1024,
        "bytes_per_state": (peak_kb - baseline_kb) * 1024 / states if grown and baseline_kb is not None else None,
        "runs": [{k: r.get(k) for k in ("seconds", "cpu_seconds", "search_seconds", "build_seconds")}
                 | {"peak_mb": r["peak_kb"] / 1024} for r in rs],
    }


def measure(models: list[str], scale: list[str], shared: str, repeat: int, timeout: float | None,
            python_timeout: float, external_tools: bool, quick: bool, log: Any = sys.stderr) -> dict[str, Any]:
    ref_py = os.path.join(shared, "ref_bfs.py")
    load_start = os.getloadavg()[0]
    mismatches: list[str] = []
    skipped: list[str] = []
    base_kb = {t: median([float(run_child(t, "baseline", ref_py, None, timeout)["peak_kb"]) for _ in range(repeat)])
               for t in ("apcheck-native", "ref")}
    base_kb["apcheck-python"] = base_kb["apcheck-reduced"] = base_kb["apcheck-native"]
    print("baseline peak RSS (idle, same imports): "
          + ", ".join(f"{t} {kb / 1024:.1f} MB" for t, kb in base_kb.items()), file=log, flush=True)
    rows: list[dict[str, Any]] = []
    tools = [t for t in LOCK_TOOLS if t not in ("spin", "rumur") or external_tools]
    if external_tools:
        external.install(log)
    with tempfile.TemporaryDirectory(prefix="apcheck-bench-") as work:
        for model in models:
            path = os.path.join(shared, "models", model + ".json")
            binaries: dict[str, tuple[str, float]] = {}
            for tool in ("spin", "rumur"):
                if tool not in tools:
                    continue
                if not external.available(tool):
                    skipped.append(f"{model}: {tool} not installed")
                    continue
                try:
                    binaries[tool] = external.build(tool, model, shared, work, timeout)
                except external.ToolError as exc:
                    skipped.append(f"{model}: {tool}: {exc}")
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
            for k in range(repeat):
                # alternate the order so slow drift on a shared machine hits every tool alike
                for tool in tools if k % 2 == 0 else tools[::-1]:
                    if tool in ("spin", "rumur"):
                        if tool not in binaries:
                            continue
                        try:
                            r = external.run(tool, binaries[tool][0], timeout)
                        except external.ToolError as exc:
                            raise BenchError(str(exc)) from exc
                    else:
                        cold = tempfile.mkdtemp(dir=work, prefix="cache-")  # native: compile included
                        r = run_child(tool, "run", ref_py, path, timeout, cache=cold)
                    mismatches += verify(model, tool, r)
                    runs[tool].append(r)
                    print(f"{model} {tool} run {k + 1}/{repeat}: {r['states']:,} states, {r['seconds']:.2f} s, "
                          f"peak {r['peak_kb'] / 1024:.0f} MB", file=log, flush=True)
            for tool in tools:
                if runs[tool]:
                    build = binaries[tool][1] if tool in binaries else None
                    rows.append(_row("locks", model, tool, runs[tool], base_kb.get(tool), build))
        for spec in scale:
            name = os.path.splitext(os.path.basename(spec))[0]
            extra = [f"max_states={QUICK_MAX_STATES}"] if quick else []
            got: dict[str, list[dict[str, Any]]] = {t: [] for t in SCALE_TOOLS}
            for k in range(repeat):
                for tool in SCALE_TOOLS if k % 2 == 0 else SCALE_TOOLS[::-1]:
                    more = [f"timeout={python_timeout}"] if tool == "apcheck-python" else []
                    cold = tempfile.mkdtemp(dir=work, prefix="cache-")
                    r = run_child(tool, "run", ref_py, spec, timeout, extra + more, cache=cold)
                    got[tool].append(r)
                    print(f"{name} {tool} run {k + 1}/{repeat}: {r['states']:,} states"
                          f"{'' if r['complete'] else ' (BOUNDED: ' + str(r['limit']) + ')'}, {r['seconds']:.2f} s, "
                          f"peak {r['peak_kb'] / 1024:.0f} MB", file=log, flush=True)
            nat, py = got["apcheck-native"][0], got["apcheck-python"][0]
            if nat["complete"] and py["complete"] or nat.get("limit") == py.get("limit") == "max-states":
                for key in ("states", "transitions", "deadlocks", "result", "lock_edges"):
                    if nat.get(key) != py.get(key):
                        mismatches.append(f"{name}: {key}: native {nat.get(key)!r} != python {py.get(key)!r}")
            red = got["apcheck-reduced"][0]
            if nat["complete"] and red["complete"] and nat["verdicts"] != red["verdicts"]:
                mismatches.append(f"{name}: verdicts: unreduced {nat['verdicts']!r} != reduced {red['verdicts']!r}")
            for tool in SCALE_TOOLS:
                rows.append(_row("scale", name, tool, got[tool], base_kb[tool]))
    return {
        "version": JSON_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "shared": shared,
        "repeat": repeat,
        "quick": quick,
        "statistic": "median" if repeat > 1 else "single run",
        "baseline_mb": {t: kb / 1024 for t, kb in base_kb.items()},
        "load_average": {"start": load_start, "end": os.getloadavg()[0], "cpus": os.cpu_count()},
        "ground_truth": {m: dict(zip(COUNT_KEYS, GROUND_TRUTH[m])) for m in models},
        "results": rows,
        "ratios": ratios(rows),
        "goals": goals(rows),
        "skipped": skipped,
        "mismatches": mismatches,
        "ok": not mismatches,
    }


def _find(rows: list[dict[str, Any]], model: str, tool: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["model"] == model and r["tool"] == tool), None)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per apcheck row: other tool's wall seconds / apcheck's (> 1: apcheck faster); scale: rate ratios."""
    out = []
    for r in rows:
        if r["tool"] not in APCHECK:
            continue
        x: dict[str, Any] = {"suite": r["suite"], "model": r["model"], "tool": r["tool"]}
        for other in ("ref", "spin", "rumur", "apcheck-python"):
            o = _find(rows, r["model"], other)
            if other == r["tool"] or o is None:
                x[f"vs_{other}"] = None
            elif r["suite"] == "scale":  # may be BOUNDED: compare rates, not times
                x[f"vs_{other}"] = (r["search_states_per_second"] / o["search_states_per_second"]
                                    if o["search_states_per_second"] else None)
            else:
                x[f"vs_{other}"] = o["seconds"] / r["seconds"] if r["seconds"] > 0 else None
        out.append(x)
    return out


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    nat = _find(rows, "phil_N14", "apcheck-native")
    for other in ("rumur", "spin"):
        o = _find(rows, "phil_N14", other)
        if nat is not None and o is not None:
            out.append({"goal": f"phil_N14 full check: apcheck-native wall < {other}",
                        "value": f"{nat['seconds']:.2f} s vs {o['seconds']:.2f} s",
                        "met": nat["seconds"] < o["seconds"]})
    for r in rows:
        if r["suite"] == "scale" and r["tool"] == "apcheck-native":
            rate = r["search_states_per_second"]
            out.append({"goal": f"{r['model']}: native, no reduction, >= {GOAL_RATE:,} states/s (search)",
                        "value": f"{rate:,.0f} states/s", "met": rate >= GOAL_RATE})
        if r["suite"] == "scale" and r["tool"] == "apcheck-reduced" and "6threads" in r["model"]:
            out.append({"goal": f"{r['model']}: default reductions, complete in < {SIX_THREAD_GOAL_S:.0f} s",
                        "value": f"{r['seconds']:.2f} s{'' if r['complete'] else ' (BOUNDED)'}",
                        "met": r["complete"] and r["seconds"] < SIX_THREAD_GOAL_S})
    return out


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def render(data: dict[str, Any]) -> str:
    heads = ["suite", "model", "tool", "states", "complete", "seconds", "search s", "build s", "states/s",
             "search states/s", "peak MB", "bytes/state"]
    table = [[r["suite"], r["model"], r["tool"], f"{r['states']:,}", "yes" if r["complete"] else f"no ({r['limit']})",
              f"{r['seconds']:.2f}", f"{r['search_seconds']:.2f}", _f(r["build_seconds"]),
              f"{r['states_per_second']:,.0f}", f"{r['search_states_per_second']:,.0f}", f"{r['peak_mb']:.1f}",
              _f(r["bytes_per_state"], "{:.1f}")] for r in data["results"]]
    out = [tabulate(table, headers=heads, disable_numparse=True,
                    colalign=("left", "left", "left") + ("right",) * 9), ""]
    rt = [[x["suite"], x["model"], x["tool"], _f(x["vs_ref"]), _f(x["vs_spin"]), _f(x["vs_rumur"]),
           _f(x["vs_apcheck-python"])] for x in data["ratios"]]
    out.append(tabulate(rt, headers=["suite", "model", "apcheck", "ref s / apcheck s", "SPIN s / apcheck s",
                                     "Rumur s / apcheck s", "native rate / python rate"],
                        disable_numparse=True, colalign=("left", "left", "left") + ("right",) * 4))
    if data["goals"]:
        out.append("")
        out.append(tabulate([[g["goal"], g["value"], "yes" if g["met"] else "NO"] for g in data["goals"]],
                            headers=["goal", "measured", "met"], disable_numparse=True))
    stat = f"median of {data['repeat']} runs" if data["repeat"] > 1 else "1 run"
    la = data["load_average"]
    out.append(f"\n{stat}; seconds = load + compile + search + analysis (apcheck, in-process) or the whole "
               "verifier run (SPIN, Rumur: build time in 'build s', not included); apcheck-native starts with an "
               "empty core cache (its compile is included); scale suite: apcheck-native and apcheck-python with no "
               "reduction, the Python core stopped at its --python-timeout (rates compared); apcheck-reduced: native "
               "with the default reductions (its verdicts checked against the unreduced run)")
    starved = [r for r in data["results"] if r["seconds"] > 0.5 and r["seconds"] > STARVED * r["cpu_seconds"]
               and r["tool"] != "rumur"]  # Rumur runs one thread per core: CPU > wall by design
    loads = f"load average {la['start']:.1f} -> {la['end']:.1f} on {la['cpus']} CPUs"
    if starved:
        worst = max(r["seconds"] / r["cpu_seconds"] for r in starved)
        out.append(f"warning: {loads}; {len(starved)} row(s) ran up to {worst:.1f}x longer than their CPU time: "
                   "other jobs shared the CPUs, so wall-clock figures are inflated")
    else:
        out.append(f"{loads}; wall clock within {STARVED:.2f}x of CPU time in every single-threaded row")
    for s in data["skipped"]:
        out.append(f"skipped: {s}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", help="comma-separated lock models from shared/benchmarks/models "
                                     f"(default {','.join(DEFAULT_MODELS)}; --quick: {','.join(QUICK_MODELS)})")
    ap.add_argument("--scale", default="all", help="scale specs: all (benchmarks/scale/*.yaml), none, or A,B")
    ap.add_argument("--quick", action="store_true",
                    help=f"sanity run: {','.join(QUICK_MODELS)}, scale specs capped at {QUICK_MAX_STATES:,} states")
    ap.add_argument("--shared", help="the shared/benchmarks directory (default: found walking up from the repo)")
    ap.add_argument("--repeat", type=int, default=1, metavar="K", help="run each K times, report the median")
    ap.add_argument("--json", metavar="FILE", help=f"also write the results as JSON (version {JSON_VERSION})")
    ap.add_argument("--timeout", type=float, help="seconds allowed per run (a run past it is a failure)")
    ap.add_argument("--python-timeout", type=float, default=120.0,
                    help="scale suite: stop the Python core after S seconds (BOUNDED; its rate is compared)")
    ap.add_argument("--no-external", action="store_true", help="skip SPIN and Rumur")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    shared = args.shared or find_shared(REPO)
    if shared is None:
        ap.error(f"no shared/benchmarks directory found walking up from {REPO}; pass --shared DIR")
    if not os.path.isfile(os.path.join(shared, "ref_bfs.py")):
        ap.error(f"{shared}: no ref_bfs.py here; --shared must name the shared/benchmarks directory")
    shared = os.path.abspath(shared)
    models = [m.strip() for m in (args.models or ",".join(QUICK_MODELS if args.quick else DEFAULT_MODELS)).split(",")
              if m.strip()]
    for m in models:
        if m not in GROUND_TRUTH:
            ap.error(f"--models: no ground truth for {m!r}; known: {', '.join(GROUND_TRUTH)}")
        if not os.path.isfile(os.path.join(shared, "models", m + ".json")):
            ap.error(f"--models: {m}.json not found in {os.path.join(shared, 'models')}")
    all_scale = sorted(glob.glob(os.path.join(HERE, "scale", "*.yaml")))
    if args.scale == "all":
        scale = all_scale
    elif args.scale == "none":
        scale = []
    else:
        names = [s.strip() for s in args.scale.split(",") if s.strip()]
        by_name = {os.path.splitext(os.path.basename(p))[0]: p for p in all_scale}
        for n in names:
            if n not in by_name:
                ap.error(f"--scale: no benchmarks/scale/{n}.yaml; known: {', '.join(by_name)}")
        scale = [by_name[n] for n in names]
    try:
        data = measure(models, scale, shared, args.repeat, args.timeout, args.python_timeout,
                       not args.no_external, args.quick)
    except BenchError as exc:
        print(f"benchmarks/run.py: FAILED: {exc}", file=sys.stderr)
        return 1
    print(render(data))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
    if data["mismatches"]:
        print("\nbenchmarks/run.py: FAILED: counts differ:", file=sys.stderr)
        for line in data["mismatches"]:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
