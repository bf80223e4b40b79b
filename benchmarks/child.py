"""One measured tool run in its own interpreter; prints one JSON line on stdout.

    python3 benchmarks/child.py TOOL MODE REPO_ROOT REF_BFS_PY [MODEL] [KEY=VALUE ...]

TOOL is ``apcheck`` (the default core, ``auto``), ``apcheck-python`` or
``apcheck-native`` (``checker.search.run.check_program`` with ``Options(quiet=True,
core=...)``, no reduction), ``apcheck-reduced`` (native, the default reductions), or
``ref`` (``ref_bfs.check`` of shared/benchmarks). MODEL is a lock
program (``.json``) or, for apcheck, a spec (``.yaml``: the scale suite); KEY=VALUE
pairs are Options overrides (``max_states=200000``, ``timeout=60``). MODE ``run``
loads the model, runs the tool and reports {states, transitions, deadlocks, shortest,
seconds, search_seconds, build_seconds, peak_kb, ...} (``peak_kb``: VmHWM, see
``_peak_kb``; ``build_seconds``: compiling the native core, part of ``seconds``);
MODE ``baseline`` only imports the same modules and reports the idle interpreter's
peak RSS, which ``run.py`` subtracts to get bytes per stored state. Only the standard
library is imported before the tool's own modules, so both modes carry the same fixed cost.

``seconds`` is load + compile + search + analysis (everything the tool does for
the model after its imports), wall clock; ``cpu_seconds`` is the same span in CPU
time, the C compiler's included (less sensitive to other jobs on a shared machine); ``search_seconds`` is the
state-space search alone.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def _cpu() -> float:
    """CPU seconds of this process and the children it waited for (the C compiler building the native
    core is one): wall clock against this tells whether other jobs shared the CPUs."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _peak_kb() -> int:
    """This interpreter's own peak RSS (KiB): VmHWM, the high-water mark of its address space.

    Not ru_maxrss: Python's subprocess starts children with vfork + exec, and Linux
    carries the parent's high-water mark across exec into the child's ru_maxrss,
    so a small child would report the runner's peak (ru_maxrss is still reported).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _maxrss_kb()


def _current_kb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return _peak_kb()


def _import_ref(ref_path: str) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ref_bfs", ref_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"child: cannot import {ref_path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _overrides(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in pairs:
        k, _, v = p.partition("=")
        out[k] = float(v) if k == "timeout" else int(v) if v.lstrip("-").isdigit() else v
    return out


def _run_apcheck(core: str, model_path: str, pairs: list[str], reduction: str = "none") -> dict[str, object]:
    from dataclasses import fields

    from checker.lang.lockprog import load_lock_program
    from checker.report.results import VIOLATED
    from checker.search.run import build_program, check_program
    from checker.spec.options import Options
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    if model_path == "":
        return {}
    t0, c0 = time.perf_counter(), _cpu()
    opts = Options(quiet=True, core=core)
    if model_path.endswith(".json"):
        program = load_lock_program(model_path)
    else:
        loaded = load_spec(model_path, default_registry())
        program = build_program(loaded.design, loaded.scenario)
        opts = opts.with_overrides(**loaded.check_options).with_overrides(
            properties=loaded.only or None, skip=loaded.skip or None)
    extra = _overrides(pairs)
    if "reduction" in {f.name for f in fields(Options)}:
        extra.setdefault("reduction", reduction)  # none: the unreduced search, what the cores are compared on
    opts = opts.with_overrides(**extra)
    build_seconds = 0.0
    if core == "native" and opts.reduction == "none":  # reduced: the core is built inside the check
        from checker.search.native.driver import native_core
        from checker.search.progmodel import ProgramModel

        nc = native_core(ProgramModel(program, opts.properties, opts.skip))
        build_seconds = nc.compile_seconds if nc is not None else 0.0
    res = check_program(program, opts)
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    st = res.stats
    shortest = None
    for p in res.properties:
        if p.name == "deadlock" and p.status == VIOLATED and p.trace is not None:
            shortest = len(p.trace.actions)
    return {
        "states": st.states,
        "transitions": st.transitions,
        "deadlocks": st.deadlock_states,
        "shortest": shortest,
        "seconds": dt,
        "cpu_seconds": cpu,
        "search_seconds": st.seconds,
        "build_seconds": build_seconds,
        "complete": st.complete,
        "limit": st.limit,
        "store": st.store,
        "state_bits": st.state_bits,
        "result": res.result,
        "lock_cycles": len(res.cycles),
        "lock_edges": len(res.lock_edges),
        "verdicts": {p.name: p.status for p in res.properties},
        "reductions": st.reductions.get("ran", []),
    }


def _run_ref(ref_path: str, model_path: str) -> dict[str, object]:
    ref = _import_ref(ref_path)
    if model_path == "":
        return {}
    t0, c0 = time.perf_counter(), _cpu()
    with open(model_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    t1 = time.perf_counter()
    states, edges, dl, shortest, _maxdepth = ref.check(spec)  # type: ignore[attr-defined]
    t2, cpu = time.perf_counter(), _cpu() - c0
    return {
        "states": states,
        "transitions": edges,
        "deadlocks": dl,
        "shortest": shortest,
        "seconds": t2 - t0,
        "cpu_seconds": cpu,
        "search_seconds": t2 - t1,
        "complete": True,
    }


APCHECK_TOOLS = {"apcheck": "auto", "apcheck-python": "python", "apcheck-native": "native",
                 "apcheck-reduced": "native"}  # the native core with the default reductions


def main(argv: list[str]) -> int:
    if len(argv) < 4 or (argv[0] not in APCHECK_TOOLS and argv[0] != "ref") or argv[1] not in ("run", "baseline"):
        print(__doc__, file=sys.stderr)
        return 2
    tool, mode, repo, ref_path = argv[:4]
    model_path = argv[4] if mode == "run" and len(argv) >= 5 else ""
    if mode == "run" and not model_path:
        print("child: run needs MODEL", file=sys.stderr)
        return 2
    sys.path.insert(0, repo)
    start_kb = _peak_kb()
    if tool == "ref":
        out = _run_ref(ref_path, model_path)
    else:
        out = _run_apcheck(APCHECK_TOOLS[tool], model_path, argv[5:],
                           "all" if tool == "apcheck-reduced" else "none")
    out.update(
        {
            "tool": tool,
            "mode": mode,
            "peak_kb": _peak_kb(),
            "start_kb": start_kb,
            "end_kb": _current_kb(),
            "ru_maxrss_kb": _maxrss_kb(),
        }
    )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
