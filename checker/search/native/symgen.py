"""Symmetry reduction in the native core: ``Symmetry.canonical`` as generated C.

``canon(s)`` replaces a state by the least image over the verified permutation
group, exactly as the Python ``Symmetry.canonical``: each permutation is its
``(keep, moves)`` pair (bits that stay, then fields moved to their image's
offset, owner values renamed through a table), and the least image is the
least packed integer (words compared from the most significant). So the C loop
stores the representatives the Python loop does.
"""

from __future__ import annotations

from collections.abc import Sequence

from checker.search.native.cgen import _u64, words_of
from checker.search.reduce.symmetry import Move

CHUNK_BITS = 56  # get_bits/put_bits read and write at most 64 bits across two words

SYM_HELPERS = r"""
static inline uint64_t get_bits(const uint64_t *s, int off, int bits) {
    int k = off >> 6, o = off & 63;
    uint64_t v = s[k] >> o;
    if (o + bits > 64) v |= s[k + 1] << (64 - o);
    return v & ((UINT64_C(1) << bits) - 1);
}

static inline void put_bits(uint64_t *s, int off, int bits, uint64_t v) {
    int k = off >> 6, o = off & 63;
    s[k] |= v << o;
    if (o + bits > 64) s[k + 1] |= v >> (64 - o);
}

static inline int words_lt(const uint64_t *a, const uint64_t *b) {
    for (int k = W - 1; k >= 0; k--)
        if (a[k] != b[k]) return a[k] < b[k];
    return 0;
}
"""


def _chunks(width: int, most: int = CHUNK_BITS) -> list[tuple[int, int]]:
    """(offset, bits) pieces of a ``width``-bit move, each at most ``most`` bits."""
    return [(lo, min(most, width - lo)) for lo in range(0, width, most)]


def sym_c(perms: Sequence[tuple[int, list[Move]]] | None, nw: int) -> list[str]:
    """``#define HAS_SYM`` and ``canon``: the identity without permutations."""
    if not perms:
        return ["#define HAS_SYM 0", "static void canon(uint64_t *s) { (void)s; }"]
    tables: list[str] = []
    body = ["static void canon(uint64_t *s) {", "    uint64_t best[W], img[W];", "    memcpy(best, s, W * 8);"]
    for keep, moves in perms:
        body.append("    {")
        body += [f"        img[{k}] = s[{k}] & {_u64(x)};" for k, x in enumerate(words_of(keep, nw))]
        for so, m, do, table in moves:
            if table is not None:
                bits = m.bit_length()
                name = f"SYMTAB{len(tables)}"
                tables.append(f"static const uint64_t {name}[{len(table)}] = {{{', '.join(map(str, table))}}};")
                body.append(f"        put_bits(img, {do}, {bits}, {name}[get_bits(s, {so}, {bits})]);")
                continue
            for lo, bits in _chunks(m.bit_length()):  # a run of neighbouring fields may be wider than a word
                body.append(f"        put_bits(img, {do + lo}, {bits}, get_bits(s, {so + lo}, {bits}));")
        body += ["        if (words_lt(img, best)) memcpy(best, img, W * 8);", "    }"]
    body += ["    memcpy(s, best, W * 8);", "}"]
    return ["#define HAS_SYM 1", SYM_HELPERS, *tables, *body]
