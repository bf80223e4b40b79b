"""Front end for lock programs (the JSON models of shared/benchmarks).

Semantics (shared/benchmarks/README.md): boolean locks, threads running a
cyclic program of ACQ/REL; ACQ is one atomic test-and-set that blocks while
the lock is taken; REL always fires. Each lock becomes a mutex of the
concurrent-program layer, each thread a cyclic thread, so the engine's
deadlock, lock-order and trace machinery apply unchanged.
"""

from __future__ import annotations

import json
import os
from typing import Any

from checker.lang.design import OperationSig, Param, Scenario, ScenarioError
from checker.lang.program import Lock, Program, ProgramBuilder


class LockProgramError(ValueError):
    pass


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise LockProgramError(msg)


def program_from_json(data: Any, name: str = "lock-program") -> Program:
    """Validate the JSON model and build the Program."""
    _require(isinstance(data, dict), "the model must be a JSON object")
    locks = data.get("locks")
    threads = data.get("threads")
    _require(isinstance(locks, list) and all(isinstance(x, str) for x in locks), "'locks' must be a list of names")
    _require(isinstance(threads, list) and threads != [], "'threads' must be a non-empty list")
    _require(len(set(locks)) == len(locks), "duplicate lock name in 'locks'")
    pb = ProgramBuilder(str(data.get("name", name)))
    by_name: dict[str, Lock] = {lk: pb.mutex(lk) for lk in locks}
    for i, t in enumerate(threads):
        _require(isinstance(t, dict) and isinstance(t.get("name"), str), f"threads[{i}] needs a 'name'")
        prog = t.get("program")
        _require(isinstance(prog, list) and prog != [],
                 f"threads[{i}] ({t['name']}): 'program' must be a non-empty list")
        tb = pb.thread(t["name"], cyclic=True)
        with tb.op(t["name"]):
            for j, step in enumerate(prog):
                ok = isinstance(step, list) and len(step) == 2 and step[0] in ("acq", "rel")
                _require(ok, f"threads[{i}].program[{j}]: expected [\"acq\"|\"rel\", LOCK]")
                lk = by_name.get(step[1])
                _require(lk is not None, f"threads[{i}].program[{j}]: unknown lock {step[1]!r}")
                assert lk is not None
                if step[0] == "acq":
                    tb.lock(lk, t["name"])
                else:
                    tb.unlock(lk, t["name"])
    return pb.build()


def load_lock_program(path: str) -> Program:
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise LockProgramError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    return program_from_json(data, os.path.splitext(os.path.basename(path))[0])


class LockProgramDesign:
    """``design: lock-program``: run a shared/benchmarks JSON model."""

    name = "lock-program"
    summary = "cyclic ACQ/REL lock programs in the JSON format of shared/benchmarks (SPIN/Rumur ground truth)"
    constants = {"program": Param("path", "the JSON model file", required=True)}
    operations: dict[str, OperationSig] = {}

    def build(self, scenario: Scenario) -> Program:
        path = scenario.constants.get("program")
        if not isinstance(path, str):
            raise ScenarioError("constants.program", "lock-program needs 'program: FILE.json'")
        if scenario.threads:
            raise ScenarioError("threads", "lock-program takes its threads from the JSON model; remove 'threads'")
        try:
            return load_lock_program(path)
        except (OSError, LockProgramError) as exc:
            raise ScenarioError("constants.program", str(exc)) from exc
