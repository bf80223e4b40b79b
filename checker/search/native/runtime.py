"""The fixed C of every native core: the part that does not depend on the Program.

``HEAD`` goes before the generated successor function (types and the macros
it uses); ``TAIL`` after it: the lock-order edge set, Python int <-> words,
the drop-in ``succ(s)``, the breadth-first loop ``bfs(...)`` and the module
definition. The module name comes from ``-DMODNAME=...`` so one source hash
gives one module.

The BFS loop mirrors ``checker.search.explore.bfs`` statement for statement
(same level accounting, same limit checks in the same places, same order of
discovery) and hands the rare events back to Python, which records them with
the explorer's own ``_Recorder``: the first violation of each code, states
where an invariant fails or a witness holds, states with no successor
(deadlock or terminal checks), the first data race and the first lock-discipline breach
(found exactly here, reported with their messages by Python), and a tick
every 4096 expanded states (timeout, memory, progress, Ctrl-C).
"""

HEAD = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n;
    int32_t aid[NACT];
    int32_t vio[NACT];
    uint64_t nxt[NACT][W];
} succ_out;

static uint8_t *g_fired;
static int g_err;
static void edge_record(int aid, const uint64_t *h, uint64_t acq);

#define NEXT() (o->nxt[o->n])
#define PUSH(a) do { o->aid[o->n] = (a); o->vio[o->n] = -1; o->n++; } while (0)
#define PUSHV(a, c) do { o->aid[o->n] = (a); o->vio[o->n] = (c); o->n++; } while (0)
#define FIRED(a) (g_fired[(a)] = 1)
#define EDGE(a, h, acq) edge_record((a), (h), (acq))
"""

TAIL = r"""
/* ------------------------------------------------------------ words <-> Python ints */

static inline uint64_t load_le64(const unsigned char *b) {
    uint64_t x = 0;
    for (int j = 7; j >= 0; j--) x = (x << 8) | b[j];
    return x;
}

static inline void store_le64(unsigned char *b, uint64_t x) {
    for (int j = 0; j < 8; j++) { b[j] = (unsigned char)x; x >>= 8; }
}

static int as_words(PyObject *v, uint64_t *w, int nw) {
    if (!PyLong_Check(v)) { PyErr_SetString(PyExc_TypeError, "a state is an int"); return -1; }
    if (nw == 1) {
        w[0] = PyLong_AsUnsignedLongLong(v);
        return (w[0] == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
    }
    unsigned char buf[8 * (W > HW ? W : HW)];
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray((PyLongObject *)v, buf, 8 * (size_t)nw, 1, 0, 1) < 0) return -1;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, buf, 8 * (size_t)nw, 1, 0) < 0) return -1;
#endif
    for (int k = 0; k < nw; k++) w[k] = load_le64(buf + 8 * k);
    return 0;
}

static PyObject *from_words(const uint64_t *w, int nw) {
    if (nw == 1) return PyLong_FromUnsignedLongLong(w[0]);
    unsigned char buf[8 * (W > HW ? W : HW)];
    for (int k = 0; k < nw; k++) store_le64(buf + 8 * k, w[k]);
    return _PyLong_FromByteArray(buf, 8 * (size_t)nw, 1, 0);
}

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 31; h *= UINT64_C(0x7fb5d329728ea185);
    h ^= h >> 27; h *= UINT64_C(0x81dadef4bc2dd44d);
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash_words(const uint64_t *s, int nw) {
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15);
    for (int k = 0; k < nw; k++) h = mix64(h ^ s[k]) + UINT64_C(0x632BE59BD9B4E019);
    return h;
}

/* ------------------------------------------------------------ dynamic lock-order records */

#define EKW (2 + HW)
static uint64_t *g_etab;  /* slots of EKW words; word 0 = aid + 1 (0: empty) */
static size_t g_emask, g_ecount;
static PyObject *g_edge_add;  /* the Python set's add: (aid, held mask, acquired mask) */

static int etab_put(uint64_t *tab, size_t mask, const uint64_t *key) {
    size_t i = (size_t)hash_words(key, EKW) & mask;
    for (;;) {
        uint64_t *slot = tab + i * EKW;
        if (slot[0] == 0) { memcpy(slot, key, EKW * 8); return 1; }
        if (memcmp(slot, key, EKW * 8) == 0) return 0;
        i = (i + 1) & mask;
    }
}

static void edge_record(int aid, const uint64_t *h, uint64_t acq) {
    uint64_t key[EKW];
    key[0] = (uint64_t)aid + 1;
    memcpy(key + 1, h, HW * 8);
    key[1 + HW] = acq;
    if (g_etab == NULL || 2 * (g_ecount + 1) > g_emask + 1) {
        size_t ncap = g_etab ? 2 * (g_emask + 1) : 256;
        uint64_t *nt = calloc(ncap, EKW * 8);
        if (nt == NULL) { PyErr_NoMemory(); g_err = 1; return; }
        if (g_etab) {
            for (size_t i = 0; i <= g_emask; i++)
                if (g_etab[i * EKW]) etab_put(nt, ncap - 1, g_etab + i * EKW);
            free(g_etab);
        }
        g_etab = nt;
        g_emask = ncap - 1;
    }
    if (!etab_put(g_etab, g_emask, key)) return;
    g_ecount++;
    if (g_edge_add == NULL) return;
    PyObject *held = from_words(h, HW);
    PyObject *tup = held ? Py_BuildValue("(iNK)", aid, held, (unsigned long long)acq) : NULL;
    PyObject *r = tup ? PyObject_CallOneArg(g_edge_add, tup) : NULL;
    Py_XDECREF(tup);
    if (r == NULL) g_err = 1;
    Py_XDECREF(r);
}

/* ------------------------------------------------------------ data races and lock discipline, exactly as
   checker.search.races decides them (a hit goes to Python, which records the finding with its message) */

enum { RACE_DATA = 1, RACE_DISCIPLINE = 2 };

/* fields successor i really writes: a write that leaves the field unchanged is no write */
static uint64_t written(const uint64_t *s, const succ_out *o, int i) {
    uint64_t w = ACT_WR[o->aid[i]];
    if (o->vio[i] >= 0 || w == 0) return w;
    uint64_t out = 0;
    for (int f = 0; f < NSHARED; f++) {
        if (!(w >> f & 1)) continue;
        for (int k = 0; k < W; k++)
            if ((s[k] ^ o->nxt[i][k]) & SHARED_MASK[f][k]) { out |= UINT64_C(1) << f; break; }
    }
    return out;
}

/* races.accesses: a read only to keep an unchanged field's value is no read */
static void accesses(const uint64_t *s, const succ_out *o, int i, uint64_t *r, uint64_t *w) {
    int a = o->aid[i];
    *r = ACT_RD[a];
    *w = ACT_WR[a];
    if (o->vio[i] >= 0 || (*r | *w) == 0) return;
    uint64_t changed = written(s, o, i);
    *r &= ~(ACT_KEEP[a] & ACT_WR[a] & ~changed);
    *w = changed;
}

/* which of the checks in mask find something in state s with successors o */
static int race_bits(const uint64_t *s, const succ_out *o, int mask) {
    int n = o->n, np = 0, bits = 0;
    int idx[NACT];
    uint64_t rd[NACT], wr[NACT];
    for (int i = 0; i < n; i++) {
        if ((ACT_RD[o->aid[i]] | ACT_WR[o->aid[i]]) == 0) continue;
        accesses(s, o, i, &rd[np], &wr[np]);
        idx[np++] = i;
    }
    if (mask & RACE_DISCIPLINE)
        for (int x = 0; x < np; x++) {
            int a = o->aid[idx[x]];
            if (ACT_SITES[a] && site_bad(a, s, rd[x], wr[x])) { bits |= RACE_DISCIPLINE; break; }
        }
    if (mask & RACE_DATA)
        for (int x = 0; x < np && !(bits & RACE_DATA); x++)
            for (int y = x + 1; y < np; y++) {
                if (ACT_THREAD[o->aid[idx[x]]] == ACT_THREAD[o->aid[idx[y]]]) continue;
                if ((wr[x] & (rd[y] | wr[y])) | (wr[y] & rd[x])) { bits |= RACE_DATA; break; }
            }
    return bits;
}

/* ------------------------------------------------------------ partial-order reduction (PartialOrder.select) */

/* keep only the ample set in o: the first thread (in list order) whose steps at its pc are
   persistent, if they are fewer than all and none fires a violation; 1 if o was reduced */
static int ample(const uint64_t *s, succ_out *o) {
    if (!HAS_POR || o->n < 2) return 0;
    int tried = -1;
    for (int i = 0; i < o->n; i++) {
        int t = ACT_THREAD[o->aid[i]];
        if (t == tried) continue;
        tried = t;
        if (!persistent(t, s)) continue;
        int cnt = 0;
        for (int j = 0; j < o->n; j++) {
            if (ACT_THREAD[o->aid[j]] != t) continue;
            if (o->vio[j] >= 0) return 0;
            cnt++;
        }
        if (cnt == o->n) return 0;
        int k = 0;
        for (int j = 0; j < o->n; j++) {
            if (ACT_THREAD[o->aid[j]] != t) continue;
            if (k != j) {
                o->aid[k] = o->aid[j];
                o->vio[k] = o->vio[j];
                memcpy(o->nxt[k], o->nxt[j], W * 8);
            }
            k++;
        }
        o->n = k;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ module state and the drop-in succ */

static succ_out g_out;
static PyObject *g_fired_obj;

static PyObject *py_init(PyObject *self, PyObject *args) {
    PyObject *fired, *add;
    if (!PyArg_ParseTuple(args, "OO", &fired, &add)) return NULL;
    if (!PyByteArray_Check(fired) || PyByteArray_Size(fired) < NACT - 1) {
        PyErr_SetString(PyExc_TypeError, "init: fired must be a bytearray with one byte per action");
        return NULL;
    }
    Py_INCREF(fired); Py_XDECREF(g_fired_obj); g_fired_obj = fired;
    g_fired = (uint8_t *)PyByteArray_AsString(fired);
    Py_INCREF(add); Py_XDECREF(g_edge_add); g_edge_add = add;
    free(g_etab); g_etab = NULL; g_emask = 0; g_ecount = 0;
    Py_RETURN_NONE;
}

static PyObject *succ_list(const uint64_t *s, const succ_out *o) {
    (void)s;
    PyObject *list = PyList_New(o->n);
    if (list == NULL) return NULL;
    for (int i = 0; i < o->n; i++) {
        PyObject *n = o->vio[i] >= 0 ? PyLong_FromLong(-1L - o->vio[i]) : from_words(o->nxt[i], W);
        PyObject *t = n ? Py_BuildValue("(iN)", o->aid[i], n) : NULL;
        if (t == NULL) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

static PyObject *py_succ(PyObject *self, PyObject *arg) {
    uint64_t s[W];
    if (g_fired == NULL) { PyErr_SetString(PyExc_RuntimeError, "native core not initialised"); return NULL; }
    if (as_words(arg, s, W) < 0) return NULL;
    succ_c(s, &g_out);
    if (g_err) { g_err = 0; return NULL; }
    return succ_list(s, &g_out);
}

static PyObject *py_race_bits(PyObject *self, PyObject *args) {
    PyObject *state;
    int mask;
    uint64_t s[W];
    if (!PyArg_ParseTuple(args, "Oi", &state, &mask)) return NULL;
    if (g_fired == NULL) { PyErr_SetString(PyExc_RuntimeError, "native core not initialised"); return NULL; }
    if (as_words(state, s, W) < 0) return NULL;
    succ_c(s, &g_out);
    if (g_err) { g_err = 0; return NULL; }
    return PyLong_FromLong(g_out.n ? race_bits(s, &g_out, mask) : 0);
}

/* ------------------------------------------------------------ the breadth-first loop */

#if NACT <= 0xFFFF
typedef uint16_t via_t;
#else
typedef uint32_t via_t;
#endif

typedef struct {
    uint64_t *states;  /* count * W words, in discovery order: also the BFS queue */
    int32_t *parent;
    via_t *via;
    size_t count, cap;
    uint64_t *tab;     /* (hash tag << 32) | (index + 1); 0 = empty */
    size_t tmask, tcount;
} store_t;

static void store_free(store_t *st) {
    free(st->states); free(st->parent); free(st->via); free(st->tab);
}

static int store_grow(store_t *st) {
    size_t ncap = st->cap ? 2 * st->cap : 4096;
    uint64_t *ns = realloc(st->states, ncap * W * 8);
    if (ns == NULL) return -1;
    st->states = ns;
    int32_t *np = realloc(st->parent, ncap * 4);
    if (np == NULL) return -1;
    st->parent = np;
    via_t *nv = realloc(st->via, ncap * sizeof(via_t));
    if (nv == NULL) return -1;
    st->via = nv;
    st->cap = ncap;
    return 0;
}

static int table_grow(store_t *st) {
    size_t ncap = st->tab ? 2 * (st->tmask + 1) : 4096;
    uint64_t *nt = calloc(ncap, 8);
    if (nt == NULL) return -1;
    for (size_t i = 0; i < st->count; i++) {
        uint64_t h = hash_words(st->states + i * W, W);
        size_t p = (size_t)h & (ncap - 1);
        while (nt[p]) p = (p + 1) & (ncap - 1);
        nt[p] = ((h >> 32) << 32) | (uint64_t)(i + 1);
    }
    free(st->tab);
    st->tab = nt;
    st->tmask = ncap - 1;
    return 0;
}

/* index of s, or -1 if absent; *slot: where it would go */
static inline long long store_find(const store_t *st, const uint64_t *s, uint64_t h, size_t *slot) {
    size_t p = (size_t)h & st->tmask;
    uint64_t tag = h >> 32;
    for (;;) {
        uint64_t e = st->tab[p];
        if (e == 0) { *slot = p; return -1; }
        if ((e >> 32) == tag) {
            size_t idx = (size_t)(e & 0xFFFFFFFFu) - 1;
            if (memcmp(st->states + idx * W, s, W * 8) == 0) return (long long)idx;
        }
        p = (p + 1) & st->tmask;
    }
}

/* Most successors are already stored: the table slot and then the stored state are two cache
   misses each. Hashing every successor first and prefetching both lets the misses overlap. */
static inline void store_prefetch_slot(const store_t *st, uint64_t h) {
    __builtin_prefetch(&st->tab[(size_t)h & st->tmask]);
}

static inline void store_prefetch_state(const store_t *st, uint64_t h) {
    uint64_t e = st->tab[(size_t)h & st->tmask];
    if (e != 0 && (e >> 32) == (h >> 32)) __builtin_prefetch(st->states + ((size_t)(e & 0xFFFFFFFFu) - 1) * W);
}

/* 1: added (index count - 1), 0: already there, -1: out of memory; h = hash_words(s, W) */
static int store_add_h(store_t *st, const uint64_t *s, uint64_t h) {
    if (st->count >= 0x7FFFFFFF) return -1;
    if (st->tab == NULL || 10 * (st->tcount + 1) > 7 * (st->tmask + 1))
        if (table_grow(st) < 0) return -1;
    size_t slot;
    if (store_find(st, s, h, &slot) >= 0) return 0;
    if (st->count == st->cap && store_grow(st) < 0) return -1;
    memcpy(st->states + st->count * W, s, W * 8);
    st->tab[slot] = ((h >> 32) << 32) | (uint64_t)(st->count + 1);
    st->tcount++;
    st->count++;
    return 1;
}

static int store_add(store_t *st, const uint64_t *s) {
    return store_add_h(st, s, hash_words(s, W));
}

static int store_has(const store_t *st, const uint64_t *s) {
    size_t slot;
    return store_find(st, s, hash_words(s, W), &slot) >= 0;
}

enum { EV_EXPANDED = 0, EV_RACE = 1, EV_VIOLATION = 2, EV_NEW_STATE = 3, EV_BEYOND = 4 };
enum { LIM_NONE = 0, LIM_TIMEOUT = 1, LIM_MEMORY = 2, LIM_DEPTH = 3, LIM_STATES = 4 };

/* ev(kind, index, state, action, code) -> int; -1 on a Python error */
static long call_ev(PyObject *ev, int kind, size_t idx, const uint64_t *s, int aid, int code) {
    PyObject *st = from_words(s, W);
    if (st == NULL) return -1;
    PyObject *r = PyObject_CallFunction(ev, "inNii", kind, (Py_ssize_t)idx, st, aid, code);
    if (r == NULL) return -1;
    long v = PyLong_AsLong(r);
    Py_DECREF(r);
    return (v == -1 && PyErr_Occurred()) ? -1 : v;
}

/* the first violation of each kind: reported once (explore.bfs records the first finding per property) */
static long report_violation(PyObject *ev, uint8_t *vio_seen, size_t cur, const uint64_t *s, int aid, int code) {
    if (vio_seen[code]) return 0;
    vio_seen[code] = 1;
    return call_ev(ev, EV_VIOLATION, cur, s, aid, code);
}

/* the invariants a new state breaks and the witnesses it satisfies, each switched off once found */
static int new_state_hits(const uint64_t *n, uint8_t *inv_on, uint8_t *wit_on, int *n_inv_on, int *n_wit_on) {
    int hit = 0;
    for (int k = 0; k < NINV; k++)
        if (inv_on[k] && !inv_pred(k, n)) { inv_on[k] = 0; (*n_inv_on)--; hit = 1; }
    for (int k = 0; k < NWIT; k++)
        if (wit_on[k] && wit_pred(k, n)) { wit_on[k] = 0; (*n_wit_on)--; hit = 1; }
    return hit;
}

static PyObject *py_bfs(PyObject *self, PyObject *args) {
    PyObject *inits, *ev, *tick, *parent_arr, *via_arr;
    long long max_states, max_depth;
    int via_size, race_on, terms_on;
    Py_buffer inv_b, wit_b;
    if (!PyArg_ParseTuple(args, "OLLiOOy*y*iiOO", &inits, &max_states, &max_depth, &via_size, &ev, &tick,
                          &inv_b, &wit_b, &race_on, &terms_on, &parent_arr, &via_arr))
        return NULL;
    if (via_size < 1 || (size_t)via_size > sizeof(via_t)) {
        PyErr_SetString(PyExc_ValueError, "bfs: via item size does not fit the action count");
        return NULL;
    }
    uint8_t inv_on[NINV + 1], wit_on[NWIT + 1], vio_seen[NVIO];
    memset(inv_on, 0, sizeof inv_on); memset(wit_on, 0, sizeof wit_on); memset(vio_seen, 0, sizeof vio_seen);
    memcpy(inv_on, inv_b.buf, inv_b.len < NINV ? (size_t)inv_b.len : NINV);
    memcpy(wit_on, wit_b.buf, wit_b.len < NWIT ? (size_t)wit_b.len : NWIT);
    PyBuffer_Release(&inv_b); PyBuffer_Release(&wit_b);
    int n_inv_on = 0, n_wit_on = 0;
    for (int k = 0; k < NINV; k++) n_inv_on += inv_on[k];
    for (int k = 0; k < NWIT; k++) n_wit_on += wit_on[k];

    store_t st = {0};
    succ_out *o = malloc(sizeof(succ_out));
    PyObject *seq = PySequence_Fast(inits, "inits must be a sequence");
    if (o == NULL || seq == NULL) { free(o); Py_XDECREF(seq); return PyErr_NoMemory(); }
    int limit = LIM_NONE;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        uint64_t s[W];
        if (as_words(PySequence_Fast_GET_ITEM(seq, i), s, W) < 0) goto fail;
        int r = store_add(&st, s);
        if (r < 0) { PyErr_NoMemory(); goto fail; }
        if (r) { st.parent[st.count - 1] = -1; st.via[st.count - 1] = 0; }
    }
    Py_CLEAR(seq);

    size_t head = 0, level_end = st.count;
    long long depth = 0;
    unsigned long long transitions = 0, ample_states = 0;
    int check_new = n_inv_on + n_wit_on > 0;
    int cut = 0;  /* a state on the depth bound had a new successor */
    {   /* explore.bfs polls its limits before the first expansion: a deadline already passed stops here */
        PyObject *r = PyObject_CallFunction(tick, "nnKLn", (Py_ssize_t)0, (Py_ssize_t)st.count,
                                            transitions, depth, (Py_ssize_t)st.count);
        if (r == NULL) goto fail;
        long v = PyLong_AsLong(r);
        Py_DECREF(r);
        if (v == -1 && PyErr_Occurred()) goto fail;
        if (v) limit = (int)v;
    }
    while (limit == LIM_NONE && head < st.count) {
        /* as explore.bfs: the bound is checked before a state is taken, so it is left unexpanded */
        if (max_states >= 0 && (long long)st.count >= max_states) { limit = LIM_STATES; break; }
        size_t cur = head++;
        if (cur == level_end) { depth++; level_end = st.count; }
        uint64_t s[W];
        memcpy(s, st.states + cur * W, W * 8);
        succ_c(s, o);
        if (g_err) { g_err = 0; goto fail; }
        if (race_on && o->n > 0 && race_bits(s, o, race_on)) {
            long r = call_ev(ev, EV_RACE, cur, s, -1, -1);
            if (r < 0) goto fail;
            race_on = (int)r;
        }
        if (o->n == 0 && (terms_on || !is_done(s))) {
            long r = call_ev(ev, EV_EXPANDED, cur, s, -1, -1);
            if (r < 0) goto fail;
            terms_on = (int)r;
        }
        ample_states += (unsigned long long)ample(s, o);  /* the checks above saw every enabled step */
        transitions += (unsigned long long)o->n;
        if (HAS_SYM)  /* as explore.bfs: successors are stored as their symmetry representatives */
            for (int i = 0; i < o->n; i++)
                if (o->vio[i] < 0) canon(o->nxt[i]);
        if (depth >= max_depth) {
            /* as explore.bfs (Recorder.beyond): a state on the bound has its steps checked -- a failing
               check and a predicate of a new successor are findings of this state's step -- but its
               successors are not stored; the bound cut the search if one of them is new */
            for (int i = 0; i < o->n; i++) {
                if (o->vio[i] >= 0) {
                    if (report_violation(ev, vio_seen, cur, s, o->aid[i], o->vio[i]) < 0) goto fail;
                    continue;
                }
                if (store_has(&st, o->nxt[i])) continue;
                cut = 1;
                if (check_new) {
                    int hit = new_state_hits(o->nxt[i], inv_on, wit_on, &n_inv_on, &n_wit_on);
                    if (hit && call_ev(ev, EV_BEYOND, cur, s, o->aid[i], -1) < 0) goto fail;
                    check_new = n_inv_on + n_wit_on > 0;
                }
            }
            continue;
        }
        uint64_t hs[NACT];
        for (int i = 0; i < o->n; i++)
            if (o->vio[i] < 0) { hs[i] = hash_words(o->nxt[i], W); store_prefetch_slot(&st, hs[i]); }
        for (int i = 0; i < o->n; i++)
            if (o->vio[i] < 0) store_prefetch_state(&st, hs[i]);
        for (int i = 0; i < o->n; i++) {
            if (o->vio[i] >= 0) {
                if (report_violation(ev, vio_seen, cur, s, o->aid[i], o->vio[i]) < 0) goto fail;
                continue;
            }
            int r = store_add_h(&st, o->nxt[i], hs[i]);
            if (r == 0) continue;
            if (r < 0) { limit = LIM_MEMORY; goto done; }
            st.parent[st.count - 1] = (int32_t)cur;
            st.via[st.count - 1] = (via_t)o->aid[i];
            if (check_new) {
                const uint64_t *n = o->nxt[i];
                int hit = new_state_hits(n, inv_on, wit_on, &n_inv_on, &n_wit_on);
                if (hit && call_ev(ev, EV_NEW_STATE, st.count - 1, n, -1, -1) < 0) goto fail;
                check_new = n_inv_on + n_wit_on > 0;
            }
        }
        if ((cur & 0xFFF) == 0) {
            PyObject *r = PyObject_CallFunction(tick, "nnKLn", (Py_ssize_t)cur, (Py_ssize_t)st.count,
                                                transitions, depth, (Py_ssize_t)(st.count - head));
            if (r == NULL) goto fail;
            long v = PyLong_AsLong(r);
            Py_DECREF(r);
            if (v == -1 && PyErr_Occurred()) goto fail;
            if (v) { limit = (int)v; break; }
        }
    }
    if (limit == LIM_NONE && cut) limit = LIM_DEPTH;
done:
    free(o);
    o = NULL;
    /* hand parent/via to the caller's arrays (one copy each), the store's big parts freed first */
    free(st.tab); st.tab = NULL;
    free(st.states); st.states = NULL;
    {
        size_t count = st.count;
        for (size_t i = 0; i < count; i++) {  /* narrow in place to the caller's via item size */
            uint32_t a = st.via[i];
            if (via_size == 1) ((uint8_t *)st.via)[i] = (uint8_t)a;
            else if (via_size == 2) ((uint16_t *)st.via)[i] = (uint16_t)a;
        }
        PyObject *pv = PyMemoryView_FromMemory((char *)st.parent, (Py_ssize_t)count * 4, PyBUF_READ);
        PyObject *r1 = pv ? PyObject_CallMethod(parent_arr, "frombytes", "O", pv) : NULL;
        Py_XDECREF(pv);
        PyObject *vv = r1 ? PyMemoryView_FromMemory((char *)st.via, (Py_ssize_t)count * via_size, PyBUF_READ) : NULL;
        PyObject *r2 = vv ? PyObject_CallMethod(via_arr, "frombytes", "O", vv) : NULL;
        Py_XDECREF(vv);
        Py_XDECREF(r1);
        store_free(&st);
        if (r2 == NULL) return NULL;
        Py_DECREF(r2);
        return Py_BuildValue("(nnKLiK)", (Py_ssize_t)count, (Py_ssize_t)(count - head), transitions, depth, limit,
                             ample_states);
    }
fail:
    free(o);
    Py_XDECREF(seq);
    store_free(&st);
    return NULL;
}

static PyMethodDef methods[] = {
    {"init", py_init, METH_VARARGS, "init(fired: bytearray, edge_add): where fired flags and lock-order records go"},
    {"succ", py_succ, METH_O, "succ(state) -> [(action, next state or -1-violation)]"},
    {"race_bits", py_race_bits, METH_VARARGS, "race_bits(state, mask) -> the checks in mask (1: data-race, "
                                              "2: lock-discipline) that find something in state"},
    {"bfs", py_bfs, METH_VARARGS, "bfs(inits, max_states, max_depth, via_size, ev, tick, inv_on, wit_on, race_on, "
                                  "terms_on, parent, via)\n"
                                  "-> (states, pending, transitions, depth, limit, ample states);\n"
                                  "extends parent and via"},
    {NULL, NULL, 0, NULL},
};

#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, STR(MODNAME), NULL, -1, methods};

PyMODINIT_FUNC CAT(PyInit_, MODNAME)(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "words", W) < 0 || PyModule_AddIntConstant(m, "violations", NVIO) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
"""
