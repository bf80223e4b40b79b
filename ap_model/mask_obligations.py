"""The AP mask rules as proof obligations over masks of any width (P1–P3b and their broken twins).

Each obligation states, over mask fields of ``width`` bits, hypotheses that
imply a goal, written with the expressions of ``ap_model.rules`` that the
designs use; a broken twin drops one check and is expected VIOLATED. Each
carries the preferences that steer a counterexample towards the scenarios'
APQNs and the text that tells it in real APQNs and sysfs writes.
``ap_model.mask_proofs`` solves them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ap_model import rules
from ap_model.rules import apqn_str, bits_of, bits_str, sysfs_mask
from checker.lang.expr import And, BitOf, Expr, If, Implies, MaskConst, Not, Or, false
from checker.lang.layout import Field, bool_field, int_field, mask_field
from checker.search.pycompile import evaluate

PROVED, VIOLATED = "PROVED", "VIOLATED"  # what an obligation is expected to come out as

# the APQNs the vfio_ap model uses (adapters 3, 4; domains 5, 6): a broken
# rule's counterexample is first sought there, so it reads like the scenarios.
PREFERRED_APIDS = (3, 4)
PREFERRED_APQIS = (5, 6)

Values = dict[Field, int]


@dataclass
class Obligation:
    """Valid iff ``And(hyps) ⇒ goal`` for every value of ``fields``."""

    name: str
    statement: str
    fields: list[Field]
    hyps: list[Expr]
    goal: Expr
    describe: Callable[[Values], str]
    expected: str = PROVED
    prefs: list[Expr] = field(default_factory=list)  # tried in order for a readable counterexample
    width: int = 256
    onehot: list[Field] = field(default_factory=list)  # mask fields with exactly one bit set (an id)


# ---------------------------------------------------------------- rendering


def _m(values: Values, f: Field) -> str:
    return bits_str(values[f], f.width_bits)


def _matrix(values: Values, apm: Field, aqm: Field) -> str:
    return f"apm={_m(values, apm)} aqm={_m(values, aqm)}"


def _pairs(apm: int, aqm: int, width: int, limit: int = 1) -> list[tuple[int, int]]:
    out = []
    for a in range(width):
        if apm >> a & 1:
            for q in range(width):
                if aqm >> q & 1:
                    out.append((a, q))
                    if len(out) >= limit:
                        return out
    return out


def _apqn(a: int, q: int) -> str:
    return f"APQN {apqn_str(a, q)} (adapter {a}, domain {q})"


# ---------------------------------------------------------- P1: apmask/aqmask


@dataclass
class _Mdevs:
    apm: list[Field]
    aqm: list[Field]

    @property
    def apms(self) -> list[Expr]:
        return [f.var for f in self.apm]

    @property
    def aqms(self) -> list[Expr]:
        return [f.var for f in self.aqm]

    @property
    def fields(self) -> list[Field]:
        return [*self.apm, *self.aqm]


def _mdevs(n: int, width: int) -> _Mdevs:
    return _Mdevs(
        [mask_field(f"mdev{i}.apm", width) for i in range(n)],
        [mask_field(f"mdev{i}.aqm", width) for i in range(n)],
    )


def _apid_prefs(f: Field, width: int) -> list[Expr]:
    """Prefer an APID mask empty, else inside the model's adapters."""
    return _id_prefs(f, width, PREFERRED_APIDS)


def _apqi_prefs(f: Field, width: int) -> list[Expr]:
    """Prefer an APQI mask empty, else inside the model's domains."""
    return _id_prefs(f, width, PREFERRED_APQIS)


def _id_prefs(f: Field, width: int, preferred: tuple[int, ...]) -> list[Expr]:
    v = f.var
    return [
        v.is_empty(),
        rules.subset(v, MaskConst(width, preferred[:1])),
        rules.subset(v, MaskConst(width, preferred)),
    ]


def _full_prefs(f: Field, width: int, keep: Sequence[int]) -> list[Expr]:
    """Prefer a host mask at its default (all ones), else all ones but for the ``keep`` bits."""
    v = f.var
    full = MaskConst(width, list(range(width)))
    return [v == full, rules.subset(~MaskConst(width, list(keep)), v)]


def _witness(cond: Callable[[int, int], Expr]) -> list[Expr]:
    """Prefer the violation at APQN 03.0005, else at one of the model's APQNs."""
    a0, q0 = PREFERRED_APIDS[0], PREFERRED_APQIS[0]
    return [cond(a0, q0), Or(*[cond(a, q) for a in PREFERRED_APIDS for q in PREFERRED_APQIS])]


def _sysfs_write(old: int, new: int, width: int, path: str) -> str:
    """The sysfs command for a mask store, relative (+3,-4) when short, else absolute hex."""
    added, removed = bits_of(new & ~old, width), bits_of(old & ~new, width)
    if 0 < len(added) + len(removed) <= 6:
        return "echo " + ",".join([f"+{b}" for b in added] + [f"-{b}" for b in removed]) + f" > {path}"
    return f"echo {sysfs_mask(new, width)} > {path}"


def p1_in_use(width: int = 256, mdevs: int = 2, broken: bool = False) -> Obligation:
    """One apmask or aqmask store (apmask_store/aqmask_store → *_commit with in_use)."""
    apmask = mask_field("apmask", width)
    aqmask = mask_field("aqmask", width)
    written = mask_field("written", width)  # the value stored into the sysfs file
    write_aq = bool_field("write_aqmask")
    md = _mdevs(mdevs, width)
    fields = [apmask, aqmask, written, write_aq, *md.fields]
    A, Q, W = apmask.var, aqmask.var, written.var

    ap_refused = false() if broken else rules.apmask_in_use(A, W, Q, md.apms, md.aqms)
    aq_refused = false() if broken else rules.aqmask_in_use(A, Q, W, md.apms, md.aqms)
    ap_after, _ = rules.mask_store(A, W, ap_refused)
    aq_after, _ = rules.mask_store(Q, W, aq_refused)
    A2 = If(write_aq.var, A, ap_after)
    Q2 = If(write_aq.var, aq_after, Q)

    pre = rules.none_reserved(A, Q, md.apms, md.aqms)
    post = rules.none_reserved(A2, Q2, md.apms, md.aqms)

    def describe(v: Values) -> str:
        post_ap = int(evaluate(A2, v))
        post_aq = int(evaluate(Q2, v))
        which = "aqmask" if v[write_aq] else "apmask"
        old = v[aqmask] if v[write_aq] else v[apmask]
        for i in range(mdevs):
            bad = _pairs(v[md.apm[i]] & post_ap, v[md.aqm[i]] & post_aq, width)
            if bad:
                a, q = bad[0]
                return (
                    f"{_apqn(a, q)} assigned to mdev{i} and reserved for zcrypt after the {which} write "
                    f"`{_sysfs_write(old, v[written], width, '/sys/bus/ap/' + which)}` "
                    f"({which} {bits_str(old, width)} -> {bits_str(v[written], width)}, committed with no "
                    f"in_use check); before: apmask={_m(v, apmask)} aqmask={_m(v, aqmask)}, "
                    + ", ".join(f"mdev{j} {_matrix(v, md.apm[j], md.aqm[j])}" for j in range(mdevs))
                )
        return "(no violating APQN found)"

    prefs = _witness(lambda a, q: And(md.apms[0].has(a), md.aqms[0].has(q), rules.apqn_reserved(A2, Q2, a, q)))
    prefs.append(Not(write_aq.var))
    for j in range(1, mdevs):
        prefs += [md.apms[j].is_empty(), md.aqms[j].is_empty()]
    prefs += _apid_prefs(md.apm[0], width) + _apqi_prefs(md.aqm[0], width)
    prefs += _full_prefs(aqmask, width, PREFERRED_APQIS) + _full_prefs(apmask, width, PREFERRED_APIDS)
    prefs += _full_prefs(written, width, PREFERRED_APIDS)
    tag = "P1.broken" if broken else "P1"
    stmt = (
        "without the in_use check (pre-dynamic AP bus), an apmask/aqmask store moves an assigned APQN to zcrypt"
        if broken
        else f"if no APQN assigned to any of {mdevs} mdevs is reserved for the default drivers, it stays so "
        "after any apmask or aqmask store (refused when in_use(newly reserved) holds)"
    )
    return Obligation(tag, stmt, fields, [pre], post, describe, VIOLATED if broken else PROVED, prefs, width)


# -------------------------------------------------- P1b / P2: assignments


def _assign_step(
    md: _Mdevs,
    apmask: Field,
    aqmask: Field,
    who: Field,
    domain: Field,
    bit: Field,
    check_reserved: bool,
    check_sharing: bool,
) -> tuple[list[Expr], list[Expr]]:
    """Post-state masks after mdev ``who`` assigns adapter/domain ``bit`` (validated as asked)."""
    n = len(md.apm)
    width = apmask.width_bits
    # a rule dropped: empty apmask/aqmask make "reserved" false, no other mdevs make "sharing" false
    vA = apmask.var if check_reserved else MaskConst(width)
    vQ = aqmask.var if check_reserved else MaskConst(width)
    new_apms, new_aqms = [], []
    for i in range(n):
        others_p = [md.apms[j] for j in range(n) if j != i] if check_sharing else []
        others_q = [md.aqms[j] for j in range(n) if j != i] if check_sharing else []
        ap_i, _ = rules.assign_adapter(md.apms[i], md.aqms[i], bit.var, vA, vQ, others_p, others_q)
        aq_i, _ = rules.assign_domain(md.apms[i], md.aqms[i], bit.var, vA, vQ, others_p, others_q)
        mine = who.var.has(i)
        new_apms.append(If(And(mine, Not(domain.var)), ap_i, md.apms[i]))
        new_aqms.append(If(And(mine, domain.var), aq_i, md.aqms[i]))
    return new_apms, new_aqms


def _assign_fields(width: int, n: int) -> tuple[Field, Field, Field, Field, Field, _Mdevs]:
    return (
        mask_field("apmask", width),
        mask_field("aqmask", width),
        mask_field("who", n),  # one-hot: the mdev whose sysfs attribute is written
        bool_field("assign_domain"),
        mask_field("id", width),  # one-hot: the APID/APQI written to assign_*
        _mdevs(n, width),
    )


def _assign_text(v: Values, who: Field, domain: Field, bit: Field) -> str:
    what = "assign_domain" if v[domain] else "assign_adapter"
    return f"echo {v[bit].bit_length() - 1} > mdev{v[who].bit_length() - 1}/{what}"


def _assign_prefs(domain: Field, bit: Field, width: int) -> list[Expr]:
    """Prefer `echo 3 > assign_adapter`."""
    return [Not(domain.var), bit.var == MaskConst(width, PREFERRED_APIDS[:1])]


def p1b_assign(width: int = 256, mdevs: int = 2, broken: bool = False) -> Obligation:
    apmask, aqmask, who, domain, bit, md = _assign_fields(width, mdevs)
    fields = [apmask, aqmask, who, domain, bit, *md.fields]
    new_apms, new_aqms = _assign_step(md, apmask, aqmask, who, domain, bit, not broken, True)
    A, Q = apmask.var, aqmask.var
    pre = rules.none_reserved(A, Q, md.apms, md.aqms)
    post = rules.none_reserved(A, Q, new_apms, new_aqms)

    def describe(v: Values) -> str:
        for i in range(mdevs):
            p, q_ = int(evaluate(new_apms[i], v)), int(evaluate(new_aqms[i], v))
            bad = _pairs(p & v[apmask], q_ & v[aqmask], width)
            if bad:
                a, q = bad[0]
                return (
                    f"{_apqn(a, q)}, reserved for zcrypt (apmask={_m(v, apmask)}, aqmask={_m(v, aqmask)}), "
                    f"becomes assigned to mdev{i} by `{_assign_text(v, who, domain, bit)}` with no "
                    "EADDRNOTAVAIL; before: "
                    + ", ".join(f"mdev{j} {_matrix(v, md.apm[j], md.aqm[j])}" for j in range(mdevs))
                )
        return "(no violating APQN found)"

    prefs = _witness(lambda a, q: And(new_apms[0].has(a), new_aqms[0].has(q), rules.apqn_reserved(A, Q, a, q)))
    prefs += [who.var.has(0)] + _assign_prefs(domain, bit, width)
    prefs += _full_prefs(apmask, width, ()) + _full_prefs(aqmask, width, ())
    for j in range(1, mdevs):
        prefs += [md.apms[j].is_empty(), md.aqms[j].is_empty()]
    prefs += _apid_prefs(md.apm[0], width) + _apqi_prefs(md.aqm[0], width)
    tag = "P1b.broken" if broken else "P1b"
    stmt = (
        "without the reservation check, assign_adapter/assign_domain assigns an APQN reserved for zcrypt"
        if broken
        else f"assign_adapter/assign_domain (EADDRNOTAVAIL check) keep every APQN of {mdevs} mdevs "
        "unreserved for the default drivers"
    )
    return Obligation(
        tag, stmt, fields, [pre], post, describe, VIOLATED if broken else PROVED, prefs, width, [bit, who]
    )


def p2_sharing(width: int = 256, mdevs: int = 2, broken: bool = False) -> Obligation:
    apmask, aqmask, who, domain, bit, md = _assign_fields(width, mdevs)
    fields = [apmask, aqmask, who, domain, bit, *md.fields]
    new_apms, new_aqms = _assign_step(md, apmask, aqmask, who, domain, bit, True, not broken)
    pre = rules.no_sharing(md.apms, md.aqms)
    post = rules.no_sharing(new_apms, new_aqms)

    def describe(v: Values) -> str:
        p = [int(evaluate(x, v)) for x in new_apms]
        q = [int(evaluate(x, v)) for x in new_aqms]
        for i in range(mdevs):
            for j in range(i + 1, mdevs):
                bad = _pairs(p[i] & p[j], q[i] & q[j], width)
                if bad:
                    a, d = bad[0]
                    return (
                        f"{_apqn(a, d)} assigned to both mdev{i} and mdev{j} after "
                        f"`{_assign_text(v, who, domain, bit)}` with no EADDRINUSE; before: "
                        + ", ".join(f"mdev{k} {_matrix(v, md.apm[k], md.aqm[k])}" for k in range(mdevs))
                        + f"; apmask={_m(v, apmask)} aqmask={_m(v, aqmask)}"
                    )
        return "(no shared APQN found)"

    def shared(a: int, q: int) -> Expr:
        return And(*[m.has(a) for m in new_apms[:2]], *[m.has(q) for m in new_aqms[:2]])

    prefs = _witness(shared)
    prefs += [who.var.has(1)] + _assign_prefs(domain, bit, width)
    prefs += _apid_prefs(md.apm[0], width) + _apqi_prefs(md.aqm[0], width)
    prefs += _apid_prefs(md.apm[1], width) + _apqi_prefs(md.aqm[1], width)
    for j in range(2, mdevs):
        prefs += [md.apms[j].is_empty(), md.aqms[j].is_empty()]
    prefs += _full_prefs(aqmask, width, ()) + _full_prefs(apmask, width, PREFERRED_APIDS)
    tag = "P2.broken" if broken else f"P2[{mdevs} mdevs]"
    stmt = (
        "without the sharing check, assign_adapter/assign_domain puts one APQN into two mdevs"
        if broken
        else f"assign_adapter/assign_domain with vfio_ap_mdev_validate_masks keep 'no APQN assigned to two "
        f"mdevs' ({mdevs} mdevs)"
    )
    return Obligation(
        tag, stmt, fields, [pre], post, describe, VIOLATED if broken else PROVED, prefs, width, [bit, who]
    )


def l0_onehot(width: int = 256) -> Obligation:
    """The one-hot id of the proofs and the int id of the designs give the same assignment."""
    apmask, aqmask, _who, _domain, _bit, md = _assign_fields(width, 2)
    ident = int_field("id", 0, width - 1)
    fields = [apmask, aqmask, ident, *md.fields]
    A, Q = apmask.var, aqmask.var
    hot = BitOf(width, ident.var)
    args = (A, Q, md.apms[1:], md.aqms[1:])
    eqs = []
    for fn in (rules.assign_adapter, rules.assign_domain):
        m_i, e_i = fn(md.apms[0], md.aqms[0], ident.var, *args)
        m_h, e_h = fn(md.apms[0], md.aqms[0], hot, *args)
        eqs += [m_i == m_h, e_i == e_h]

    def describe(v: Values) -> str:
        return f"the two forms differ for id {v[ident]}"

    return Obligation(
        "L0",
        "assign_adapter/assign_domain with an int id (designs) and with its one-hot mask (proofs) give the same "
        "masks and errno, for every id and all masks",
        fields,
        [],
        And(*eqs),
        describe,
        PROVED,
        [],
        width,
    )


# ------------------------------------------------------------ P3: filtering


def _filter_fields(width: int) -> tuple[list[Field], list[Field]]:
    main = [
        mask_field("matrix.apm", width),
        mask_field("matrix.aqm", width),
        mask_field("matrix.adm", width),
        mask_field("qci.apm", width),
        mask_field("qci.aqm", width),
        mask_field("qci.adm", width),
    ]
    rows = [mask_field(f"bound[{a}]", width) for a in range(width)]
    return main, rows


def p3_filter(width: int = 256, broken: bool = False) -> Obligation:
    main, rows = _filter_fields(width)
    apm, aqm, adm, capm, caqm, cadm = (f.var for f in main)
    bound = [r.var for r in rows]
    if broken:  # cfg intersection only: the loop dropping APIDs with an unbound queue is skipped
        s_apm, s_aqm = apm & capm, aqm & caqm
    else:
        s_apm, s_aqm = rules.filter_matrix(apm, aqm, capm, caqm, bound)
    s_adm = rules.filter_cdoms(adm, cadm)
    goal = And(
        rules.subset(s_apm, apm & capm),
        rules.subset(s_aqm, aqm & caqm),
        rules.subset(s_adm, adm & cadm),
        rules.all_bound(s_apm, s_aqm, bound),
    )

    def describe(v: Values) -> str:
        sa, sq = int(evaluate(s_apm, v)), int(evaluate(s_aqm, v))
        for a, q in _pairs(sa, sq, width, limit=width * width):
            if not v[rows[a]] >> q & 1:
                return (
                    f"{_apqn(a, q)} is in the guest's CRYCB (shadow apm={bits_str(sa, width)} "
                    f"aqm={bits_str(sq, width)}) but its queue is not bound to vfio_ap "
                    f"(bound[{a}]={_m(v, rows[a])}); matrix {_matrix(v, main[0], main[1])}, "
                    f"QCI apm={_m(v, main[3])} aqm={_m(v, main[4])}"
                )
        return "(no unbound APQN found in the shadow)"

    prefs: list[Expr] = []
    if broken:
        prefs += _witness(lambda a, q: And(s_apm.has(a), s_aqm.has(q), Not(bound[a].has(q))))
        prefs += _apid_prefs(main[0], width) + _apqi_prefs(main[1], width) + [adm.is_empty()]
        prefs += [f.var == MaskConst(width, list(range(width))) for f in main[3:]]
        prefs.append(And(*[r.is_empty() for r in bound]))
    stmt = (
        "without the filtering loop, a queue not bound to vfio_ap reaches the guest's CRYCB"
        if broken
        else "shadow APCB (guest CRYCB) ⊆ assigned ∩ host configuration, and every APQN of "
        f"shadow.apm × shadow.aqm is bound to vfio_ap ({width} bound rows of {width} bits; adm ⊆ assigned ∩ config)"
    )
    return Obligation(
        "P3.broken" if broken else "P3",
        stmt,
        [*main, *rows],
        [],
        goal,
        describe,
        VIOLATED if broken else PROVED,
        prefs,
        width,
    )


def p3b_filter_maximal(width: int = 256) -> Obligation:
    main, rows = _filter_fields(width)
    apm, aqm, _adm, capm, caqm, _cadm = (f.var for f in main)
    bound = [r.var for r in rows]
    s_apm, s_aqm = rules.filter_matrix(apm, aqm, capm, caqm, bound)
    keep = And(*[Implies(And((apm & capm).has(a), rules.subset(s_aqm, bound[a])), s_apm.has(a)) for a in range(width)])
    goal = And(s_aqm == (aqm & caqm), keep)

    def describe(v: Values) -> str:
        return f"filter dropped too much: shadow apm={bits_str(int(evaluate(s_apm, v)), width)}"

    return Obligation(
        "P3b",
        "filtering keeps every domain of assigned ∩ config and drops an APID only if one of its APQNs "
        "in the shadow is not bound (P3 is not met by an empty shadow)",
        [*main, *rows],
        [],
        goal,
        describe,
        PROVED,
        [],
        width,
    )


def obligations(width: int = 256) -> list[Obligation]:
    return [
        l0_onehot(width),
        p1_in_use(width),
        p1_in_use(width, broken=True),
        p1b_assign(width),
        p1b_assign(width, broken=True),
        p2_sharing(width, 2),
        p2_sharing(width, 3),
        p2_sharing(width, 2, broken=True),
        p3_filter(width),
        p3_filter(width, broken=True),
        p3b_filter_maximal(width),
    ]
