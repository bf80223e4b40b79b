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
from checker.lang.inputs import InputError, bad_character, read_text
from checker.lang.program import ProgramBuilder
from checker.lang.program_types import Lock, Program

# input limits (README, "Input limits"): the largest shared benchmark has 14 threads of 4 steps
MAX_PROGRAM_BYTES = 4 << 20
MAX_THREADS = 64
MAX_LOCKS = 256
MAX_STEPS = 256  # per thread


class LockProgramError(ValueError):
    pass


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise LockProgramError(msg)


def _name(v: Any, where: str) -> str:
    _require(isinstance(v, str) and v != "", f"{where}: expected a non-empty string")
    err = bad_character(v)
    _require(err is None, f"{where}: {err.message if err else ''}")
    return str(v)


def program_from_json(data: Any, name: str = "lock-program") -> Program:
    """Validate the JSON model (within the documented input limits) and build the Program."""
    _require(isinstance(data, dict), "the model must be a JSON object")
    locks = data.get("locks")
    threads = data.get("threads")
    _require(isinstance(locks, list), "'locks' must be a list of names")
    _require(len(locks) <= MAX_LOCKS, f"more than {MAX_LOCKS} locks (the input limit)")
    locks = [_name(x, f"locks[{i}]") for i, x in enumerate(locks)]
    _require(isinstance(threads, list) and threads != [], "'threads' must be a non-empty list")
    _require(len(threads) <= MAX_THREADS, f"more than {MAX_THREADS} threads (the input limit)")
    _require(len(set(locks)) == len(locks), "duplicate lock name in 'locks'")
    pb = ProgramBuilder(_name(data["name"], "name") if "name" in data else name)
    by_name: dict[str, Lock] = {lk: pb.mutex(lk) for lk in locks}
    seen: set[str] = set()
    for i, t in enumerate(threads):
        _require(isinstance(t, dict) and "name" in t, f"threads[{i}] needs a 'name'")
        tname = _name(t["name"], f"threads[{i}].name")
        _require(tname not in seen, f"threads[{i}]: duplicate thread name {tname!r}")
        seen.add(tname)
        prog = t.get("program")
        _require(isinstance(prog, list) and prog != [],
                 f"threads[{i}] ({tname}): 'program' must be a non-empty list")
        _require(len(prog) <= MAX_STEPS, f"threads[{i}] ({tname}): more than {MAX_STEPS} steps (the input limit)")
        tb = pb.thread(tname, cyclic=True)
        with tb.op(tname):
            for j, step in enumerate(prog):
                ok = isinstance(step, list) and len(step) == 2 and step[0] in ("acq", "rel") \
                    and isinstance(step[1], str)
                _require(ok, f"threads[{i}].program[{j}]: expected [\"acq\"|\"rel\", LOCK]")
                lk = by_name.get(step[1])
                _require(lk is not None, f"threads[{i}].program[{j}]: unknown lock {step[1]!r}")
                assert lk is not None
                if step[0] == "acq":
                    tb.lock(lk, tname)
                else:
                    tb.unlock(lk, tname)
    return pb.build()


def load_lock_program(path: str) -> Program:
    try:
        data = json.loads(read_text(path, MAX_PROGRAM_BYTES, "lock program"))
    except InputError as exc:
        raise LockProgramError(f"{path}:{exc.line}:{exc.col}: {exc.message}") from None
    except json.JSONDecodeError as exc:
        raise LockProgramError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise LockProgramError(f"{path}:1:1: JSON nested too deeply (the input limit)") from None
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
