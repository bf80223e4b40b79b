"""SPIN and Rumur on the shared lock-program models: build once, run measured, parse the counts.

Build steps follow shared/benchmarks/README.md. SPIN: ``spin -a`` then ``gcc -O2
-DSAFETY -DMEMLIM=16384 -DNOREDUCE``, run ``./pan -m4194304 -w24 -c0`` (DFS, no
partial-order reduction, every deadlock counted). Rumur: the default verifier
(one thread per core, traces on) with ``--max-errors`` raised so the run explores
the whole space after the deadlock instead of stopping at it (a full check, like
apcheck's), built with the README's ``cc -O3 -march=native ... -flto``.

Each run goes through ``/usr/bin/time`` (a small parent, so the peak RSS it reports
is the tool's own; see child.py on ru_maxrss after exec).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import Any

TIME = "/usr/bin/time"
RUMUR_MAX_ERRORS = "1000000"


class ToolError(Exception):
    """A tool is missing, failed to build, or printed something we cannot parse."""


def available(tool: str) -> bool:
    return shutil.which({"spin": "spin", "rumur": "rumur"}[tool]) is not None and os.access(TIME, os.X_OK)


def install(log: Any) -> None:
    """apt-get install spin rumur (the README's route); quiet when it cannot (not root, no apt)."""
    if available("spin") and available("rumur"):
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print("spin/rumur missing and not installable here (needs root and apt-get): their rows are skipped",
              file=log, flush=True)
        return
    print("installing spin and rumur with apt-get ...", file=log, flush=True)
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "spin", "rumur", "time"]):
        subprocess.run(cmd, capture_output=True, check=False)


def _run(cmd: list[str], cwd: str, timeout: float | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{cmd[0]}: timed out after {timeout} s") from exc


def build(tool: str, model: str, shared: str, workdir: str, timeout: float | None) -> tuple[str, float]:
    """Generate and compile the verifier for ``model``; (binary path, build seconds)."""
    src = os.path.join(shared, "models", model + (".pml" if tool == "spin" else ".m"))
    if not os.path.isfile(src):
        raise ToolError(f"{src}: no {tool} model")
    d = os.path.join(workdir, f"{tool}-{model}")
    os.makedirs(d, exist_ok=True)
    shutil.copy(src, d)
    t0 = time.perf_counter()
    if tool == "spin":
        steps = [["spin", "-a", os.path.basename(src)],
                 ["gcc", "-O2", "-DSAFETY", "-DMEMLIM=16384", "-DNOREDUCE", "-o", "pan", "pan.c"]]
        binary = os.path.join(d, "pan")
    else:
        steps = [["rumur", "--max-errors", RUMUR_MAX_ERRORS, "--output", "v.c", os.path.basename(src)],
                 ["cc", "-std=c11", "-O3", "-march=native", "-mtune=native", "-flto", "-fwhole-program", "-mcx16",
                  "-o", "v", "v.c", "-lpthread"]]
        binary = os.path.join(d, "v")
    for cmd in steps:
        cp = _run(cmd, d, timeout)
        if cp.returncode != 0:
            raise ToolError(f"{' '.join(cmd)}: exit {cp.returncode}: {cp.stderr.strip()[:400]}")
    return binary, time.perf_counter() - t0


def _int(pattern: str, text: str, what: str) -> int:
    m = re.search(pattern, text)
    if m is None:
        raise ToolError(f"cannot find {what} in the output:\n{text[-800:]}")
    return int(m.group(1))


def run(tool: str, binary: str, timeout: float | None) -> dict[str, Any]:
    """One measured run: counts, wall/CPU seconds and peak RSS (KiB) as child.py reports them."""
    args = ["./pan", "-m4194304", "-w24", "-c0"] if tool == "spin" else ["./v"]
    cmd = [TIME, "-f", "@@TIME %e %U %S %M", *args]
    cp = _run(cmd, os.path.dirname(binary), timeout)
    text = cp.stdout + cp.stderr
    m = re.search(r"@@TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", text)
    if m is None:
        raise ToolError(f"{tool}: no timing line (exit {cp.returncode}):\n{text[-800:]}")
    wall, user, sys_, peak = float(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4))
    if tool == "spin":
        states = _int(r"(\d+) states, stored", text, "states")
        transitions = _int(r"(\d+) transitions \(= stored\+matched\)", text, "transitions") - 1
        deadlocks = _int(r"errors: (\d+)", text, "errors")
    else:
        states = _int(r"(\d+) states, \d+ rules fired", text, "states")
        transitions = _int(r"\d+ states, (\d+) rules fired", text, "rules fired")
        deadlocks = _int(r"(\d+) error\(s\) found", text, "errors") if "error(s) found" in text else 0
    return {
        "states": states,
        "transitions": transitions,
        "deadlocks": deadlocks,
        "shortest": None,  # neither prints a shortest trace length here (SPIN is DFS)
        "seconds": wall,
        "cpu_seconds": user + sys_,
        "search_seconds": wall,
        "complete": True,
        "peak_kb": peak,
    }
