"""Expression trees -> C: the successor function, predicates and tables of one Program.

The C mirrors ``checker.search.codegen`` line for line: the same action order,
the same violation codes (assigned in the same walk), the same fired flags and
the same dynamic lock-order records, so the native core and the Python core
give identical results. A state is ``W`` little-endian 64-bit words; every
value is computed as ``int64_t`` (fields are at most ``MAX_FIELD_BITS`` wide,
so masks, ints and their sums fit). Programs outside what this generator
covers raise ``Unsupported`` and run on the Python core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checker.lang.expr import BOOL, Bin, Const, Expr, Ite, Nary, Un, Var
from checker.lang.heldsets import static_acquire, static_held
from checker.lang.layout import Field
from checker.lang.program_types import Action, Program, RwSem
from checker.search.codegen import Violation, eq_pattern, neq_pattern, split_updates
from checker.search.native.runtime import HEAD, TAIL
from checker.search.races import SiteRule

MAX_FIELD_BITS = 62  # a field value, and one bit past it, fit in int64_t


class Unsupported(Exception):
    """This program needs something the C generator does not cover (the Python core runs it)."""


@dataclass
class CSource:
    text: str  # the complete C source of the extension module
    words: int
    violations: list[Violation]


def words_of(x: int, n: int) -> list[int]:
    return [(x >> (64 * k)) & 0xFFFFFFFFFFFFFFFF for k in range(n)]


def _u64(x: int) -> str:
    return f"UINT64_C({x:#x})"


def field_raw(f: Field, st: str = "s") -> str:
    """The stored bits of ``f`` as int64_t (a field may straddle two words)."""
    return bits_raw(f.offset, f.bits, st)


def bits_raw(offset: int, bits: int, st: str = "s") -> str:
    """The ``bits`` stored bits at ``offset`` as int64_t."""
    k, o = divmod(offset, 64)
    m = (1 << bits) - 1
    if o + bits <= 64:
        core = f"({st}[{k}] >> {o})" if o else f"{st}[{k}]"
    else:
        core = f"(({st}[{k}] >> {o}) | ({st}[{k + 1}] << {64 - o}))"
    return f"((int64_t)({core} & {_u64(m)}))"


class Temps:
    """Subexpressions of one C block hoisted into locals, so the text stays linear in the expression DAG.

    The trees share subtrees (Select chains, held-lock tests); printed as trees they grow to
    megabytes that ``cc`` needs tens of seconds for. Every expression is pure and total (shifts by
    a state-dependent amount are range-guarded inside one node), so computing a subexpression
    once, before the statement that uses it, cannot change a result.
    """

    def __init__(self, parent: Temps | None = None) -> None:
        self.parent = parent
        self.counter: list[int] = parent.counter if parent is not None else [0]
        self.by_text: dict[str, str] = {}
        self.by_id: dict[int, tuple[Expr, str]] = {}  # holds the Expr: its id is not reused meanwhile
        self.lines: list[str] = []

    def find(self, key: int | str) -> str | None:
        t: Temps | None = self
        while t is not None:
            if isinstance(key, int):
                if key in t.by_id:
                    return t.by_id[key][1]
            elif key in t.by_text:
                return t.by_text[key]
            t = t.parent
        return None

    def bind(self, e: Expr, text: str) -> str:
        name = self.find(text)
        if name is None:
            name = f"t{self.counter[0]}"
            self.counter[0] += 1
            self.by_text[text] = name
            self.lines.append(f"const int64_t {name} = {text};")
        self.by_id[id(e)] = (e, name)
        return name


def expr_c(e: Expr, names: Mapping[int, str] | None = None, temps: Temps | None = None) -> str:
    """C (int64_t) computing ``e``; mirrors ``pycompile.expr_src``. With ``temps``, every composite
    subexpression becomes a local of that block."""
    if names and id(e) in names:
        return names[id(e)]
    if isinstance(e, Const):
        return f"INT64_C({int(e.value)})"
    if temps is not None:
        hit = temps.find(id(e))
        if hit is not None:
            return hit
    text = _node_c(e, names, temps)
    return temps.bind(e, text) if temps is not None else text


def _node_c(e: Expr, names: Mapping[int, str] | None, temps: Temps | None) -> str:
    if isinstance(e, Var):
        f: Field = e.field  # type: ignore[assignment]
        raw = field_raw(f)
        return f"({raw} + INT64_C({f.lo}))" if f.lo else raw
    if isinstance(e, Un):
        a = expr_c(e.a, names, temps)
        if e.op == "not":
            return f"(!{a})"
        if e.op == "~":
            return f"({a} ^ INT64_C({(1 << e.sort.width) - 1}))"
        raise Unsupported(f"unary {e.op}")
    if isinstance(e, Bin):
        a, b = expr_c(e.a, names, temps), expr_c(e.b, names, temps)
        if e.op in ("==", "!=", "<", "<=", ">", ">=", "+", "-", "&", "|", "^"):
            return f"({a} {e.op} {b})"
        w = e.a.sort.width
        if e.op == "has":
            if isinstance(e.b, Const):
                return f"(({a} >> {e.b.value}) & 1)" if 0 <= e.b.value < w else "INT64_C(0)"
            return f"({b} >= 0 && {b} < {w} && (({a} >> {b}) & 1))"
        if e.op == "setbit":
            if isinstance(e.b, Const):
                return f"({a} | INT64_C({1 << e.b.value}))" if 0 <= e.b.value < w else a
            return f"(({b} >= 0 && {b} < {w}) ? ({a} | (INT64_C(1) << {b})) : {a})"
        if e.op == "clrbit":
            full = (1 << w) - 1
            if isinstance(e.b, Const):
                return f"({a} & INT64_C({full ^ (1 << e.b.value)}))" if 0 <= e.b.value < w else a
            return f"(({b} >= 0 && {b} < {w}) ? ({a} & (INT64_C({full}) ^ (INT64_C(1) << {b}))) : {a})"
        raise Unsupported(f"binary {e.op}")
    if isinstance(e, Nary):
        joiner = " && " if e.op == "and" else " || "
        return "(" + joiner.join(expr_c(x, names, temps) for x in e.args) + ")"
    if isinstance(e, Ite):
        return f"({expr_c(e.c, names, temps)} ? {expr_c(e.a, names, temps)} : {expr_c(e.b, names, temps)})"
    raise Unsupported(f"expression {type(e).__name__}")


def _pattern_c(mask: int, value: int, nw: int, negate: bool = False) -> str:
    """``s & mask == value`` over the words where ``mask`` has bits."""
    if mask == 0:
        return "0" if negate else "1"
    terms = [f"(s[{k}] & {_u64(m)}) == {_u64(v)}"
             for k, (m, v) in enumerate(zip(words_of(mask, nw), words_of(value, nw))) if m]
    if value & ~mask:  # the unsatisfiable pattern (1, 2)
        terms = ["0"]
    cond = " && ".join(terms)
    return f"!({cond})" if negate else f"({cond})"


def _held_words(program: Program, t: int, nh: int, temps: Temps) -> list[str]:
    """Run-time held set of thread ``t``, heldsets' encoding, as ``nh`` uint64 word expressions."""
    parts: list[list[str]] = [[] for _ in range(nh)]

    def put(bit: int, cond: Expr) -> None:
        k, o = divmod(bit, 64)
        parts[k].append(f"({expr_c(cond, None, temps)} ? {_u64(1 << o)} : 0)")

    for lk in program.locks:
        put(2 * lk.index, lk.held_by(t, "w") if isinstance(lk, RwSem) else lk.held_by(t))
        if isinstance(lk, RwSem) and t in lk.readers:
            put(2 * lk.index + 1, lk.held_by(t, "r"))
    return [" | ".join(p) if p else "0" for p in parts]


def _action_c(a: Action, program: Program, vio: list[Violation], held: frozenset[int] | None,
              nw: int, nh: int) -> list[str]:
    """``{ guard temps; if (guard) { updates; lock-order record; checks or the next state } }``"""
    gt = Temps()
    pat = eq_pattern(a.guard)
    cond = _pattern_c(pat[0], pat[1], nw) if pat is not None else expr_c(a.guard, None, gt)
    bt = Temps(gt)
    body: list[str] = []

    def stmt(line: str) -> None:
        body.extend(bt.lines)
        bt.lines.clear()
        body.append(line)

    names: dict[int, str] = {}
    keep, const_bits, computed = split_updates(a, program.layout.total_bits)
    per_word: list[list[str]] = [[] for _ in range(nw)]
    for name, f, e in computed:
        stmt(f"const int64_t {name} = {expr_c(e, None, bt)};")
        names[id(e)] = name
        stored = f"((uint64_t)({name} - INT64_C({f.lo})))" if f.lo else f"((uint64_t){name})"
        w, o = divmod(f.offset, 64)
        per_word[w].append(f"({stored} << {o})" if o else stored)
        if o + f.bits > 64:
            per_word[w + 1].append(f"({stored} >> {64 - o})")
    if a.acquires:
        if len(a.acquires) > 64:
            raise Unsupported("more than 64 acquisitions in one step")
        if static_acquire(a, held):
            stmt(f"FIRED({a.aid});")
        else:
            hw = _held_words(program, a.thread, nh, bt)
            acq = " | ".join(f"({expr_c(x.cond, None, bt)} ? {_u64(1 << i)} : 0)" for i, x in enumerate(a.acquires))
            stmt(f"{{ uint64_t h[HW] = {{{', '.join(hw)}}}; EDGE({a.aid}, h, {acq}); }}")
    nxt = [f"(s[{k}] & {_u64(kp)})" + (f" | {_u64(c)}" if c else "") + "".join(f" | {p}" for p in per_word[k])
           for k, (kp, c) in enumerate(zip(words_of(keep, nw), words_of(const_bits, nw)))]
    emit = f"{{ uint64_t *n = NEXT(); {' '.join(f'n[{k}] = {x};' for k, x in enumerate(nxt))} PUSH({a.aid}); }}"
    chain: list[str] = []
    for c in a.checks:
        code = len(vio)
        vio.append(Violation(a.aid, c.prop, c.message))
        pbad = neq_pattern(c.bad)
        bad = _pattern_c(pbad[0], pbad[1], nw, negate=True) if pbad is not None else expr_c(c.bad, names, bt)
        chain.append(f"{'else if' if chain else 'if'} ({bad}) PUSHV({a.aid}, {code});")
    body.extend(bt.lines)  # the checks' temps, before the if/else chain
    body.extend(chain)
    body.append(f"else {emit}" if chain else emit)
    inner = [f"if ({cond}) {{", *("    " + x for x in body), "}"]
    return ["{", *("    " + x for x in gt.lines + inner), "}"]


def successor_c(program: Program, nw: int, nh: int) -> tuple[list[str], list[Violation]]:
    """``succ_c`` and one function per thread (a switch on its pc): small functions keep ``cc -O2`` fast."""
    vio: list[Violation] = []
    held = static_held(program)
    lines: list[str] = []
    for th, per_label in zip(program.threads, program.by_label):
        lines.append(f"static __attribute__((noinline)) void succ_t{th.index}(const uint64_t *s, succ_out *o) {{")
        lines.append(f"    switch ({expr_c(th.pc.var)}) {{")
        for pc, acts in enumerate(per_label):
            if not acts:
                continue
            lines.append(f"    case {pc}: {{")
            for a in acts:
                lines.extend("        " + x for x in _action_c(a, program, vio, held[th.index][pc], nw, nh))
            lines.append("        break; }")
        lines += ["    default: break; }", "}"]
    lines.append("static int succ_c(const uint64_t *s, succ_out *o) {")
    lines.append("    o->n = 0;")
    lines += [f"    succ_t{th.index}(s, o);" for th in program.threads]
    lines += ["    return o->n;", "}"]
    return lines, vio


def _pred_fn(name: str, exprs: Sequence[Expr]) -> list[str]:
    out = [f"static int {name}(int k, const uint64_t *s) {{", "    switch (k) {"]
    for k, e in enumerate(exprs):
        if e.sort != BOOL:
            raise Unsupported("a predicate must be boolean")
        temps = Temps()
        text = expr_c(e, None, temps)
        out.append(f"    case {k}: {{ {' '.join(temps.lines)} return ({text}) != 0; }}")
    out += ["    default: return 0;", "    }", "}"]
    return out


def _race_tables(program: Program, nw: int, reads: Sequence[frozenset[Field]], writes: Sequence[frozenset[Field]],
                 keep: Sequence[frozenset[Field]], rules: Sequence[Sequence[SiteRule]]) -> list[str]:
    """Per action: race-checked fields read / written / read only to keep (the race checker's
    footprints, as bitsets), its thread, and its lock-discipline sites as ``site_bad``; per checked
    field: its word masks. The runtime's ``race_bits`` decides what ``checker.search.races`` does."""
    shared = sorted(set().union(*reads, *writes), key=lambda f: f.offset)
    if len(shared) > 64:
        raise Unsupported("more than 64 race-checked fields")
    index = {f: i for i, f in enumerate(shared)}

    def bits(sets: Sequence[frozenset[Field]]) -> str:
        return ", ".join(_u64(sum(1 << index[f] for f in x if f in index)) for x in sets) or "0"

    masks = ["{" + ", ".join(_u64(m) for m in words_of(f.mask, nw)) + "}" for f in shared]
    na = max(1, len(program.actions))
    has_sites = [int(bool(r)) for r in rules] or [0]
    return [
        f"#define NSHARED {len(shared)}",
        f"static const uint64_t ACT_RD[{na}] = {{{bits(reads)}}};",
        f"static const uint64_t ACT_WR[{na}] = {{{bits(writes)}}};",
        f"static const uint64_t ACT_KEEP[{na}] = {{{bits(keep)}}};",
        f"static const int32_t ACT_THREAD[{na}] = {{{', '.join(str(a.thread) for a in program.actions) or '0'}}};",
        f"static const uint8_t ACT_SITES[{na}] = {{{', '.join(map(str, has_sites))}}};",
        f"static const uint64_t SHARED_MASK[{max(1, len(shared))}][W] = {{{', '.join(masks) or '{0}'}}};",
        *_site_fn(rules, index),
    ]


def _site_fn(rules: Sequence[Sequence[SiteRule]], index: dict[Field, int]) -> list[str]:
    """site_bad(aid, s, r, w): a write without every declared lock or a read without any, where
    another thread's access conflicts (races.RaceChecker.discipline, per action)."""
    out = ["static int site_bad(int aid, const uint64_t *s, uint64_t r, uint64_t w) {",
           "    (void)s; (void)r; (void)w;", "    switch (aid) {"]
    for aid, sites in enumerate(rules):
        if not sites:
            continue
        temps = Temps()
        tests = []
        for rule in sites:
            bit = f"UINT64_C(1) << {index[rule.field]}"
            on_w = f"!({expr_c(rule.holds_all, None, temps)})" if rule.other_if_write else "0"
            on_r = f"!({expr_c(rule.holds_any, None, temps)})" if rule.other_if_read else "0"
            tests.append(f"if (w & ({bit})) {{ if ({on_w}) return 1; }} "
                         f"else if (r & ({bit})) {{ if ({on_r}) return 1; }}")
        out.append(f"    case {aid}: {{ {' '.join(temps.lines)} {' '.join(tests)} return 0; }}")
    out += ["    default: return 0;", "    }", "}"]
    return out


def generate(program: Program, invariants: Sequence[Expr], witnesses: Sequence[Expr],
             reads: Sequence[frozenset[Field]], writes: Sequence[frozenset[Field]],
             keep: Sequence[frozenset[Field]], rules: Sequence[Sequence[SiteRule]],
             reductions: Sequence[str]) -> CSource:
    """The module source for ``program``: succ_c, inv_pred/wit_pred, is_done, race tables, runtime.
    ``reductions``: ``porgen.por_c`` and ``symgen.sym_c``'s lines (``persistent``, ``canon``)."""
    for f in program.layout.fields:
        if f.bits > MAX_FIELD_BITS:
            raise Unsupported(f"field {f.name} is {f.bits} bits wide")
    nw = max(1, (program.layout.total_bits + 63) // 64)
    nh = max(1, (2 * len(program.locks) + 63) // 64)
    body, vio = successor_c(program, nw, nh)
    has_cyclic = any(th.cyclic for th in program.threads)
    done_mask = sum(th.pc.mask for th in program.threads)
    done_val = sum((th.done - th.pc.lo) << th.pc.offset for th in program.threads if th.done >= 0)
    n = len(program.actions)
    lines = [
        f"/* apcheck native core for program {program.name!r}: generated, do not edit */",
        f"#define W {nw}",
        f"#define HW {nh}",
        f"#define NACT {max(1, n)}",
        f"#define NVIO {max(1, len(vio))}",
        f"#define NINV {len(invariants)}",
        f"#define NWIT {len(witnesses)}",
        f"#define NBYTES {(program.layout.total_bits + 7) // 8 or 1}",
        HEAD,
        *_race_tables(program, nw, reads, writes, keep, rules),
        *reductions,
        "static int is_done(const uint64_t *s) {",
        "    return 0;" if has_cyclic else f"    return {_pattern_c(done_mask, done_val, nw)};",
        "}",
        *_pred_fn("inv_pred", invariants),
        *_pred_fn("wit_pred", witnesses),
        *body,
        TAIL,
    ]
    return CSource("\n".join(lines) + "\n", nw, vio)
