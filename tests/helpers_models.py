"""Small concurrent-program models with known answers, shared by the engine tests.

Every builder returns a fresh, built ``Program``. The expected numbers the
tests assert were worked out by hand (see the tests' comments) and, for lock
scripts, are cross-checked against ``ref_explore``: a small explorer written
independently of the engine (mutexes, trylock, rw-semaphores), itself checked
against the ground truth of shared/benchmarks.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from checker.lang.expr import Not
from checker.lang.layout import bool_field, int_field
from checker.lang.program import Program, ProgramBuilder
from checker.report.results import CheckResult, PropertyResult
from checker.search.run import check_program
from checker.spec.options import Options


def check(program: Program, **kw: object) -> CheckResult:
    """check_program with quiet options plus overrides; unreduced unless ``reduction`` is given
    (the expected counts here are those of the full state graph)."""
    kw.setdefault("reduction", "none")
    opts = Options(quiet=True, **kw)  # type: ignore[arg-type]
    return check_program(program, opts)


def prop(result: CheckResult, name: str) -> PropertyResult:
    found = [p for p in result.properties if p.name == name]
    assert len(found) == 1, f"property {name!r} appears {len(found)} times in {[p.name for p in result.properties]}"
    return found[0]


def statuses(result: CheckResult) -> dict[str, str]:
    return {p.name: p.status for p in result.properties}


def lanes(result: CheckResult, name: str) -> list[tuple[str, str]]:
    """(thread, function) of every step of a property's trace."""
    tr = prop(result, name).trace
    assert tr is not None, f"{name} has no trace"
    return [(s.thread, s.function) for s in tr.steps]


# ---------------------------------------------------------------- lock scripts

# A script step: ("lock"|"unlock"|"read"|"unread"|"write"|"unwrite", lock) or ("trylock", lock, fail_pc).
# Locks used with read/write are rw-semaphores, the others mutexes.
Step = tuple
Script = Sequence[Step]

RW_OPS = {"read": "down_read", "unread": "up_read", "write": "down_write", "unwrite": "up_write"}


def fn_name(thread: str, step: Step) -> str:
    """The function name script_program gives a step, e.g. ``T1_lock_A``."""
    return f"{thread}_{step[0]}_{step[1]}"


def script_program(name: str, threads: dict[str, Script], cyclic: bool = False) -> Program:
    """Build the engine Program of lock scripts (each step's function is ``fn_name``)."""
    pb = ProgramBuilder(name)
    rw_names = {st[1] for sc in threads.values() for st in sc if st[0] in RW_OPS}
    locks: dict[str, object] = {}
    for script in threads.values():
        for st in script:
            if st[1] not in locks:
                locks[st[1]] = pb.rwsem(st[1]) if st[1] in rw_names else pb.mutex(st[1])
    for tname, script in threads.items():
        tb = pb.thread(tname, cyclic=cyclic)
        targets = {st[2] for st in script if st[0] == "trylock"}
        for pc, st in enumerate(script):
            if pc in targets:
                tb.label(f"pc{pc}")
            lk, fn = locks[st[1]], fn_name(tname, st)
            if st[0] == "trylock":
                tb.trylock(lk, fn, fail=f"pc{st[2]}")  # type: ignore[arg-type]
            elif st[0] in RW_OPS:
                getattr(tb, RW_OPS[st[0]])(lk, fn)
            else:
                getattr(tb, st[0])(lk, fn)
    return pb.build()


def ref_explore(threads: Sequence[Script], cyclic: bool = False, max_depth: int | None = None,
                edges: set[tuple[str, str]] | None = None) -> tuple[int, int, int, int]:
    """Independent BFS over lock scripts: (states, transitions, deadlock states, shortest deadlock trace).

    With ``max_depth`` D: states at most D steps away; those exactly D away are
    examined (transitions counted, deadlocks seen) but their successors not kept.

    Semantics of shared/benchmarks/README.md for mutexes (lock = one atomic
    test-and-set that blocks while taken; unlock always fires), trylock never
    blocks, and rw-semaphores as the engine documents them: a writer needs no
    holder, and one that finds holders first queues (a step of its own); a
    reader needs no writer and does not pass a queued writer. A
    bounded script that finished is not blocked. ``edges`` collects lockdep's
    (held, acquired) pairs of every fired blocking acquisition (never a trylock).
    """
    n = len(threads)
    init: tuple[tuple[int, ...], frozenset[tuple[str, int, str]], frozenset[tuple[str, int]]] = (
        tuple(0 for _ in threads), frozenset(), frozenset())
    seen = {init: 0}
    queue = deque([init])
    transitions = deadlocks = 0
    shortest = -1

    def step_at(pcs: tuple[int, ...], t: int) -> Step | None:
        return threads[t][pcs[t]] if pcs[t] < len(threads[t]) else None

    while queue:
        st = queue.popleft()
        pcs, held, queued = st
        nxt = []
        for t in range(n):
            cur = step_at(pcs, t)
            if cur is None:
                continue
            op, lk = cur[0], cur[1]
            holders = {(h, m) for (x, h, m) in held if x == lk}
            npc = pcs[t] + 1
            new_held, new_queued = held, queued
            if op == "write" and holders:
                if (lk, t) not in queued:  # rwsem_down_write_slowpath: join the wait list
                    nxt.append((pcs, held, queued | {(lk, t)}))
                continue
            if op == "lock" or op == "write":
                if holders:
                    continue
                new_held = held | {(lk, t, "w")}
                new_queued = queued - {(lk, t)}
            elif op == "read":
                writer_queued = any(x == lk and u != t for x, u in queued)
                if any(m == "w" for _, m in holders) or writer_queued:
                    continue
                new_held = held | {(lk, t, "r")}
            elif op == "trylock":
                if holders:
                    npc = cur[2]
                else:
                    new_held = held | {(lk, t, "w")}
            elif op == "unread":
                new_held = held - {(lk, t, "r")}
            else:  # unlock / unwrite
                new_held = frozenset(x for x in held if not (x[0] == lk and x[2] == "w"))
            if edges is not None and op in ("lock", "read", "write"):
                edges.update((x, lk) for (x, h, _) in held if h == t)
            if cyclic and npc == len(threads[t]):
                npc = 0
            nxt.append((pcs[:t] + (npc,) + pcs[t + 1:], new_held, new_queued))
        transitions += len(nxt)
        done = all(pcs[t] >= len(threads[t]) for t in range(n))
        if not nxt and not done:
            deadlocks += 1
            if shortest < 0:
                shortest = seen[st]
        if max_depth is not None and seen[st] >= max_depth:
            continue
        for s2 in nxt:
            if s2 not in seen:
                seen[s2] = seen[st] + 1
                queue.append(s2)
    return len(seen), transitions, deadlocks, shortest


AB = [("lock", "A"), ("lock", "B"), ("unlock", "B"), ("unlock", "A")]
BA = [("lock", "B"), ("lock", "A"), ("unlock", "A"), ("unlock", "B")]
GATE_AB = [("lock", "C"), *AB, ("unlock", "C")]
GATE_BA = [("lock", "C"), *BA, ("unlock", "C")]
# T1: lock A; trylock B, on failure go to "unlock A"; unlock B; unlock A
TRY_AB = [("lock", "A"), ("trylock", "B", 3), ("unlock", "B"), ("unlock", "A")]
# rw-semaphore R and mutex M
READ_M = [("read", "R"), ("lock", "M"), ("unlock", "M"), ("unread", "R")]
M_WRITE = [("lock", "M"), ("write", "R"), ("unwrite", "R"), ("unlock", "M")]
M_READ = [("lock", "M"), ("read", "R"), ("unread", "R"), ("unlock", "M")]
WRITE = [("write", "R"), ("unwrite", "R")]

SCRIPTS: dict[str, dict[str, Script]] = {
    "ab_ba": {"T1": AB, "T2": BA},
    "ab_ab": {"T1": AB, "T2": AB},
    "gated": {"T1": GATE_AB, "T2": GATE_BA},
    "trylock": {"T1": TRY_AB, "T2": BA},
    "rw_inversion": {"T1": READ_M, "T2": M_WRITE},
    "rw_two_readers": {"T1": READ_M, "T2": M_READ},
    "rw_readers_writer": {"T1": READ_M, "T2": M_READ, "T3": WRITE},
}


def bench_scripts(data: dict) -> list[Script]:  # type: ignore[type-arg]
    """The JSON lock-program format of shared/benchmarks as scripts for ref_explore."""
    ops = {"acq": "lock", "rel": "unlock"}
    return [[(ops[op], lk) for op, lk in t["program"]] for t in data["threads"]]


def scripted(name: str) -> Program:
    return script_program(name, SCRIPTS[name])


def ref_counts(name: str) -> tuple[int, int, int, int]:
    return ref_explore(list(SCRIPTS[name].values()))


# ---------------------------------------------------------------- lockdep misuse


def bad_unlock(correct: bool = False) -> Program:
    """T1 unlocks M without holding it (or, when ``correct``, after locking it)."""
    pb = ProgramBuilder("unlock")
    m = pb.mutex("M")
    t1 = pb.thread("T1")
    if correct:
        t1.lock(m, "t1_lock")
    t1.unlock(m, "t1_unlock")
    return pb.build()


def held_at_exit(correct: bool = False) -> Program:
    pb = ProgramBuilder("held_at_exit")
    m = pb.mutex("M")
    t1 = pb.thread("T1")
    t1.lock(m, "t1_lock")
    if correct:
        t1.unlock(m, "t1_unlock")
    return pb.build()


# ---------------------------------------------------------------- memory safety


def use_after_free(correct: bool = False) -> Program:
    """T1 frees obj0; T2 dereferences it. ``correct``: T2 owns a reference (refs 2) and
    both drop theirs with put; the last put frees."""
    pb = ProgramBuilder("uaf")
    if not correct:
        pool = pb.pool("obj", ["obj0"], init_alive=[0])
        t1 = pb.thread("T1")
        t1.step("t1_free", "kfree(obj)", objects=[pb.free(pool, 0)])
        t2 = pb.thread("T2")
        t2.step("t2_use", "obj->x", checks=pb.use(pool, 0))
    else:
        pool = pb.pool("obj", ["obj0"], refcount_max=2, init_alive=[0], init_refs=2)
        t1 = pb.thread("T1")
        t1.step("t1_put", "put(obj)", objects=[pb.put(pool, 0)])
        t2 = pb.thread("T2")
        t2.step("t2_use", "obj->x", checks=pb.use(pool, 0))
        t2.step("t2_put", "put(obj)", objects=[pb.put(pool, 0)])
    return pb.build()


def double_free(correct: bool = False) -> Program:
    """Both threads free obj0; ``correct``: each frees it under M only if still alive."""
    pb = ProgramBuilder("double_free")
    pool = pb.pool("obj", ["obj0"], init_alive=[0])
    m = pb.mutex("M")
    for t in ("T1", "T2"):
        tb = pb.thread(t)
        low = t.lower()
        if correct:
            tb.lock(m, f"{low}_lock")
            tb.step(f"{low}_test", "if (!obj) goto out", jumps=[(Not(pool.alive(0)), "out")])
            tb.step(f"{low}_free", "kfree(obj); obj = NULL", objects=[pb.free(pool, 0)])
            tb.label("out")
            tb.unlock(m, f"{low}_unlock")
        else:
            tb.step(f"{low}_free", "kfree(obj)", objects=[pb.free(pool, 0)])
    return pb.build()


def refcount_underflow(refs: int = 1, release: bool = False) -> Program:
    """Two threads each put obj0 once, starting from ``refs`` references."""
    pb = ProgramBuilder("underflow")
    pool = pb.pool("obj", ["obj0"], refcount_max=2, init_alive=[0], init_refs=refs)
    for t in ("T1", "T2"):
        pb.thread(t).step(f"{t.lower()}_put", "put(obj)", objects=[pb.put(pool, 0, release=release)])
    return pb.build()


def leak(correct: bool = False) -> Program:
    pb = ProgramBuilder("leak")
    pool = pb.pool("obj", ["obj0"], leak_check=True)
    t1 = pb.thread("T1")
    t1.step("t1_alloc", "obj = kzalloc()", objects=[pb.alloc(pool, 0)])
    if correct:
        t1.step("t1_free", "kfree(obj)", objects=[pb.free(pool, 0)])
    return pb.build()


# ---------------------------------------------------------------- data race


def race(writer_locks: bool = False) -> Program:
    """x is protected by M. T1 writes x (under M only when ``writer_locks``); T2 reads it under M."""
    pb = ProgramBuilder("race")
    m = pb.mutex("M")
    x = pb.var(int_field("x", 0, 1), protected_by=[m])
    pb.var(int_field("y", 0, 1))
    t1 = pb.thread("T1")
    if writer_locks:
        t1.lock(m, "t1_lock")
    t1.step("t1_write", "x = 1", updates={pb.field("x"): 1})
    if writer_locks:
        t1.unlock(m, "t1_unlock")
    t2 = pb.thread("T2")
    t2.lock(m, "t2_lock")
    t2.step("t2_read", "y = x", updates={pb.field("y"): x})
    t2.unlock(m, "t2_unlock")
    return pb.build()


# ---------------------------------------------------------------- counters, invariants, paths


def counters(n1: int = 3, n2: int = 3) -> tuple[ProgramBuilder, object, object]:
    """T1 increments a ``n1`` times, T2 increments b ``n2`` times; returned unbuilt."""
    pb = ProgramBuilder("counters")
    a = pb.var(int_field("a", 0, n1))
    b = pb.var(int_field("b", 0, n2))
    t1 = pb.thread("T1")
    for i in range(n1):
        t1.step(f"inc_a{i}", "a++", updates={pb.field("a"): a + 1})
    t2 = pb.thread("T2")
    for i in range(n2):
        t2.step(f"inc_b{i}", "b++", updates={pb.field("b"): b + 1})
    return pb, a, b


def long_and_short() -> Program:
    """``bad`` is set by T1 after 5 steps or by T2 after 2: BFS must show T2's 2 steps."""
    pb = ProgramBuilder("paths")
    bad = pb.var(bool_field("bad"))
    t1 = pb.thread("T1")
    for i in range(4):
        t1.step(f"slow{i}", "work")
    t1.step("slow_bad", "bad = 1", updates={pb.field("bad"): True})
    t2 = pb.thread("T2")
    t2.step("fast0", "work")
    t2.step("fast_bad", "bad = 1", updates={pb.field("bad"): True})
    pb.always("never_bad", Not(bad), "bad is never set")
    return pb.build()


def wide_model(extra_bits: int = 130) -> Program:
    """A model wider than 128 bits (constant padding fields) on top of AB/BA."""
    pb = ProgramBuilder("wide")
    for i in range(extra_bits):
        pb.var(bool_field(f"pad{i}", init=bool(i % 2)))
    a, b = pb.mutex("A"), pb.mutex("B")
    for tname, order in (("T1", (a, b)), ("T2", (b, a))):
        tb = pb.thread(tname)
        tb.lock(order[0], f"{tname}_first")
        tb.lock(order[1], f"{tname}_second")
        tb.unlock(order[1], f"{tname}_unlock2")
        tb.unlock(order[0], f"{tname}_unlock1")
    return pb.build()


# ---------------------------------------------------------------- determinism


def summary(result: CheckResult) -> dict[str, object]:
    """Everything a run decides, as JSON-able data (no timings, no memory)."""
    st = result.stats
    props = []
    for p in result.properties:
        tr = p.trace
        props.append({
            "name": p.name, "status": p.status, "detail": p.detail,
            "trace": None if tr is None else {
                "actions": list(tr.actions), "waits": list(tr.waits), "final": tr.final,
                "steps": [[s.thread, s.function, s.action, list(s.locks_held), [list(c) for c in s.changes], s.note]
                          for s in tr.steps],
            },
        })
    return {
        "result": result.result,
        "stats": [st.states, st.transitions, st.deadlock_states, st.max_depth, st.complete, st.limit, st.store],
        "properties": props,
        "edges": [[e.src, e.dst, e.src_mode, e.dst_mode, e.thread, e.function, e.src_function]
                  for e in result.lock_edges],
        "cycles": [[list(c.locks), c.reachable] for c in result.cycles],
    }


# ---------------------------------------------------------------- shared benchmarks


def find_shared_benchmarks() -> Path | None:
    """Walk up from this file to a directory holding ``shared/benchmarks``."""
    here = Path(__file__).resolve()
    for d in [here.parent, *here.parents]:
        cand = d / "shared" / "benchmarks"
        if (cand / "models").is_dir():
            return cand
    return None


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def bench_models() -> Path:
    """shared/benchmarks/models when it is beside the repository, else the copies in examples/models."""
    shared = find_shared_benchmarks()
    return shared / "models" if shared is not None else EXAMPLES / "models"


def ground_truth() -> dict[str, tuple[int, int, int, int]]:
    """examples/ground_truth.json (SPIN/Rumur): model -> (states, transitions, deadlock states, shortest trace)."""
    doc = json.loads((EXAMPLES / "ground_truth.json").read_text(encoding="utf-8"))
    return {k: (v["states"], v["transitions"], v["deadlock_states"], v["shortest_trace"])
            for k, v in doc["models"].items()}


def load_bench(name: str) -> Program:
    from checker.lang.lockprog import program_from_json

    data = json.loads((bench_models() / f"{name}.json").read_text(encoding="utf-8"))
    return program_from_json(data, name)

