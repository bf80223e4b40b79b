"""Generate one successor function for a Program.

``succ(s)`` returns ``[(action_id, next_state), ...]`` in action order; a
negative next state ``-1-k`` means the action fired into violation ``k`` of
``Compiled.violations``. Guards that only test fields against constants
become one ``s & M == V``; constant assignments become one ``(s & K) | C``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checker.lang.expr import BOOL, Bin, Const, Expr, Nary, Un, Var
from checker.lang.heldsets import static_acquire, static_held
from checker.lang.layout import Field
from checker.lang.program_types import Action, Program, RwSem
from checker.search.pycompile import compile_fn, expr_src


@dataclass
class Violation:
    aid: int
    prop: str
    message: str


@dataclass
class Compiled:
    succ: Callable[[int], list[tuple[int, int]]]
    violations: list[Violation]
    fired: bytearray  # per action: fired at least once (static-edge acquires only)
    dynamic_edges: set[tuple[int, int, int]]  # (aid, held lock bitmask, acquired-index bitmask)
    static_held: list[list[frozenset[int] | None]]
    source: str = ""
    env: dict[str, Any] = field(default_factory=dict)


def eq_pattern(e: Expr) -> tuple[int, int] | None:
    """(mask, value) if ``e`` is a conjunction of field == constant tests."""
    terms = e.args if isinstance(e, Nary) and e.op == "and" else (e,)
    m = v = 0
    for t in terms:
        if isinstance(t, Const) and t.value is True:
            continue
        if isinstance(t, Bin) and t.op == "==" and isinstance(t.a, Var) and isinstance(t.b, Const):
            f: Field = t.a.field  # type: ignore[assignment]
            val = int(t.b.value)
        elif isinstance(t, Var) and t.sort == BOOL:
            f, val = t.field, 1  # type: ignore[assignment]
        elif isinstance(t, Un) and t.op == "not" and isinstance(t.a, Var):
            f, val = t.a.field, 0  # type: ignore[assignment]
        else:
            return None
        if not f.lo <= val <= f.hi:
            return (1, 2)  # unsatisfiable: s & 1 can never be 2
        fm = f.mask
        fv = (val - f.lo) << f.offset
        if m & fm and (v & fm) != fv:
            return (1, 2)
        m |= fm
        v |= fv
    return m, v


def neq_pattern(e: Expr) -> tuple[int, int] | None:
    """(mask, value) if ``e`` is ``not (s & mask == value)``: a disjunction of field != constant."""
    terms = e.args if isinstance(e, Nary) and e.op == "or" else (e,)
    conj = []
    for t in terms:
        if isinstance(t, Bin) and t.op == "!=" and isinstance(t.a, Var) and isinstance(t.b, Const):
            conj.append(Bin("==", t.a, t.b, BOOL))
        else:
            return None
    return eq_pattern(Nary("and", tuple(conj)) if len(conj) > 1 else conj[0])


def _held_mask_src(program: Program, t: int) -> str:
    """Run-time held set of thread ``t`` in heldsets' encoding (bit 2i write/mutex, 2i+1 read)."""
    parts = []
    for lk in program.locks:
        wheld = lk.held_by(t, "w") if isinstance(lk, RwSem) else lk.held_by(t)
        parts.append(f"({1 << 2 * lk.index} if {expr_src(wheld)} else 0)")
        if isinstance(lk, RwSem) and t in lk.readers:
            parts.append(f"({1 << (2 * lk.index + 1)} if {expr_src(lk.held_by(t, 'r'))} else 0)")
    return " | ".join(parts) if parts else "0"


def split_updates(a: Action, total_bits: int) -> tuple[int, int, list[tuple[str, Field, Expr]]]:
    """(bits kept from s, constant bits or'ed in, [(local name, field, expr)] computed at run time)."""
    keep = (1 << total_bits) - 1
    const_bits = 0
    computed: list[tuple[str, Field, Expr]] = []
    for k, (f, e) in enumerate(a.updates.items()):
        keep &= ~f.mask
        if isinstance(e, Const):
            const_bits |= (int(e.value) - f.lo) << f.offset
        else:
            computed.append((f"v{k}", f, e))
    return keep, const_bits, computed


def _action_lines(a: Action, program: Program, vio: list[Violation], held: frozenset[int] | None) -> list[str]:
    lines: list[str] = []
    pat = eq_pattern(a.guard)
    if pat is not None:
        gm, gv = pat
        cond = "True" if gm == 0 else f"s & {gm} == {gv}"
    else:
        cond = expr_src(a.guard)
    lines.append(f"if {cond}:")
    body: list[str] = []
    names: dict[int, str] = {}
    keep, const_bits, computed = split_updates(a, program.layout.total_bits)
    parts: list[str] = []
    for name, f, e in computed:
        body.append(f"{name} = {expr_src(e)}")
        names[id(e)] = name
        stored = f"({name} - {f.lo})" if f.lo else name
        parts.append(f"({stored} << {f.offset})" if f.offset else stored)
    # lock-order bookkeeping
    if a.acquires:
        if static_acquire(a, held):
            body.append(f"F[{a.aid}] = 1")
        else:
            acq = " | ".join(f"({1 << i} if {expr_src(x.cond)} else 0)" for i, x in enumerate(a.acquires))
            body.append(f"R(({a.aid}, {_held_mask_src(program, a.thread)}, {acq}))")
    nxt = f"(s & {keep})" + (f" | {const_bits}" if const_bits else "") + "".join(f" | {p}" for p in parts)
    first = True
    for c in a.checks:
        code = len(vio)
        vio.append(Violation(a.aid, c.prop, c.message))
        pat_bad = neq_pattern(c.bad)
        bad = f"s & {pat_bad[0]} != {pat_bad[1]}" if pat_bad is not None else expr_src(c.bad, names)
        body.append(f"{'if' if first else 'elif'} {bad}:")
        body.append(f"    app(({a.aid}, {-1 - code}))")
        first = False
    if first:
        body.append(f"app(({a.aid}, {nxt}))")
    else:
        body.append("else:")
        body.append(f"    app(({a.aid}, {nxt}))")
    lines.extend("    " + x for x in body)
    return lines


def _dispatch(pcs: list[int], per_pc: dict[int, list[str]], var: str) -> list[str]:
    """Balanced if-tree over the pc values that have actions."""
    if len(pcs) == 1:
        return per_pc[pcs[0]]
    if len(pcs) <= 3:
        out: list[str] = []
        for i, pc in enumerate(pcs):
            out.append(f"{'if' if i == 0 else 'elif'} {var} == {pc}:")
            out.extend("    " + x for x in per_pc[pc])
        return out
    mid = len(pcs) // 2
    lo, hi = pcs[:mid], pcs[mid:]
    out = [f"if {var} < {hi[0]}:"]
    out.extend("    " + x for x in _dispatch(lo, per_pc, var))
    out.append("else:")
    out.extend("    " + x for x in _dispatch(hi, per_pc, var))
    return out


def compile_program(program: Program) -> Compiled:
    vio: list[Violation] = []
    held = static_held(program)
    body = ["out = []", "app = out.append"]
    for th, per_label in zip(program.threads, program.by_label):
        per_pc: dict[int, list[str]] = {}
        for pc, acts in enumerate(per_label):
            lines: list[str] = []
            for a in acts:
                lines.extend(_action_lines(a, program, vio, held[th.index][pc]))
            per_pc[pc] = lines
        var = f"p{th.index}"
        body.append(f"{var} = {expr_src(th.pc.var)}")
        if not th.cyclic:
            per_pc.setdefault(th.done, ["pass"])
        body.extend(_dispatch(sorted(per_pc), per_pc, var))
    body.append("return out")
    fired = bytearray(len(program.actions))
    dyn: set[tuple[int, int, int]] = set()
    env: dict[str, Any] = {"F": fired, "R": dyn.add}
    succ = compile_fn("s", body, "succ", env)
    return Compiled(succ, vio, fired, dyn, held, succ.__apcheck_source__, env)  # type: ignore[attr-defined]

