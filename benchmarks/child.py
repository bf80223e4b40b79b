"""One measured tool run in its own interpreter; prints one JSON line on stdout.

    python3 benchmarks/child.py TOOL MODE REPO_ROOT REF_BFS_PY [MODEL_JSON]

TOOL is ``apcheck`` (``checker.run.check_program`` with ``Options(quiet=True)``)
or ``ref`` (``ref_bfs.check`` of shared/benchmarks). MODE ``run`` loads the model,
runs the tool and reports {states, transitions, deadlocks, shortest, seconds,
search_seconds, peak_kb, ...}
(``peak_kb``: VmHWM, see ``_peak_kb``); MODE ``baseline`` only imports the same modules
and reports the idle interpreter's peak RSS, which ``run.py`` subtracts to get
bytes per stored state. Only the standard library is imported before the tool's
own modules, so both modes carry the same fixed cost.

``seconds`` is load + compile + search + analysis (everything the tool does for
the model after its imports), wall clock; ``cpu_seconds`` is the same span in CPU
time (less sensitive to other jobs on a shared machine); ``search_seconds`` is the
state-space search alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time


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


def _run_apcheck(model_path: str) -> dict[str, object]:
    from checker.lang.lockprog import load_lock_program
    from checker.report.results import VIOLATED
    from checker.search.run import check_program
    from checker.spec.options import Options

    if model_path == "":
        return {}
    t0, c0 = time.perf_counter(), time.process_time()
    program = load_lock_program(model_path)
    res = check_program(program, Options(quiet=True))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
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
        "complete": st.complete,
        "store": st.store,
        "state_bits": st.state_bits,
        "result": res.result,
        "lock_cycles": len(res.cycles),
    }


def _run_ref(ref_path: str, model_path: str) -> dict[str, object]:
    ref = _import_ref(ref_path)
    if model_path == "":
        return {}
    t0, c0 = time.perf_counter(), time.process_time()
    with open(model_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    t1 = time.perf_counter()
    states, edges, dl, shortest, _maxdepth = ref.check(spec)  # type: ignore[attr-defined]
    t2, cpu = time.perf_counter(), time.process_time() - c0
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


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5) or argv[0] not in ("apcheck", "ref") or argv[1] not in ("run", "baseline"):
        print(__doc__, file=sys.stderr)
        return 2
    tool, mode, repo, ref_path = argv[:4]
    model_path = argv[4] if mode == "run" and len(argv) == 5 else ""
    if mode == "run" and not model_path:
        print("child: run needs MODEL_JSON", file=sys.stderr)
        return 2
    sys.path.insert(0, repo)
    start_kb = _peak_kb()
    out = _run_apcheck(model_path) if tool == "apcheck" else _run_ref(ref_path, model_path)
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
