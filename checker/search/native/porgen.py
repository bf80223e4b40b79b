"""Partial-order reduction in the native core: ``PartialOrder.select`` as generated C.

``persistent(t, s)`` is ``PartialOrder.persistent`` over the same tables (a
thread's pc row per other thread, with the lock alternatives where the thread
holds a lock the other must wait for), and the runtime's ``ample`` applies the
same rule as ``select``: the first thread, in the successor list's order, whose
steps at its pc are persistent, when they are fewer than all and none fires a
violation. So the native loop expands exactly the states the Python loop does.
"""

from __future__ import annotations

from checker.search.native.cgen import _u64, bits_raw
from checker.search.reduce.por import PorTables


def por_c(tables: PorTables | None) -> list[str]:
    """``#define HAS_POR`` and ``persistent``: always 0 without tables."""
    if tables is None:
        return ["#define HAS_POR 0", "static int persistent(int t, const uint64_t *s) { (void)t; (void)s; return 0; }"]
    pcs, checks = tables
    rows: list[str] = []
    body = ["static int persistent(int t, const uint64_t *s) {", "    switch (t) {"]

    def row(bits: int, n: int) -> str:
        name = f"ROW{len(rows)}"
        words = [(bits >> (64 * k)) & 0xFFFFFFFFFFFFFFFF for k in range(max(1, (n + 63) // 64))]
        rows.append(f"static const uint64_t {name}[{len(words)}] = {{{', '.join(_u64(x) for x in words)}}};")
        return name

    for t, per_pc in enumerate(checks):
        off, mask, lo = pcs[t]
        body.append(f"    case {t}: switch ({bits_raw(off, mask.bit_length())} + {lo}) {{")
        for p, cons in enumerate(per_pc):
            if cons is None:
                continue
            tests = []
            for uoff, um, ulo, bits, alts in cons:
                npc = um + 1 + ulo
                q = f"({bits_raw(uoff, um.bit_length())} + {ulo})"
                alt = "".join(f" || ({bits_raw(o, mm.bit_length())} == {held} && BIT({row(lb, npc)}, q))"
                              for o, mm, held, lb in alts)
                tests.append(f"{{ const int64_t q = {q}; if (!(BIT({row(bits, npc)}, q){alt})) return 0; }}")
            body.append(f"        case {p}: {' '.join(tests)} return 1;")
        body.append("        default: return 0; }")
    body += ["    default: return 0;", "    }", "}"]
    return ["#define HAS_POR 1", "#define BIT(r, q) (((r)[(q) >> 6] >> ((q) & 63)) & 1)", *rows, *body]
