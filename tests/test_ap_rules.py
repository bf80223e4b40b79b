"""Worked kernel examples for the AP mask rules (ap_model.rules), on concrete masks.

Adapters 3 and 4, domains 5 and 6, 16-bit masks (8-bit in the property tests).
Every rule is an expression; ``checker.pycompile.evaluate`` computes it.
"""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ap_model import rules
from ap_model.rules import (
    EADDRINUSE,
    EADDRNOTAVAIL,
    EBUSY,
    ENODEV,
    apqn_reserved,
    assign_adapter,
    assign_domain,
    assignment_error,
    filter_cdoms,
    filter_matrix,
    in_use,
    newly_reserved,
    reserved_for_default,
    sharing_conflict,
)
from checker.lang.expr import BitOf, Expr, ExprError, MaskConst, false
from checker.lang.layout import int_field, mask_field
from checker.search.pycompile import evaluate

W = 16
ALL = (1 << W) - 1


def M(*bits: int) -> Expr:
    return MaskConst(W, bits)


def ALL_BUT(*bits: int) -> Expr:
    return MaskConst(W, [b for b in range(W) if b not in bits])


def ev(e: Expr) -> int | bool:
    return evaluate(e, {})


def bits(v: int) -> set[int]:
    return {i for i in range(W) if v >> i & 1}


# ------------------------------------------------------------ reservation rule


def test_default_masks_reserve_everything_for_zcrypt() -> None:
    # ap.apmask / ap.aqmask default to all ones: every APQN belongs to the default drivers
    assert ev(apqn_reserved(M(*range(W)), M(*range(W)), 3, 5)) is True
    assert ev(apqn_reserved(M(*range(W)), M(*range(W)), 4, 6)) is True


def test_apid_cleared_in_apmask_makes_its_apqns_available() -> None:
    apmask, aqmask = ALL_BUT(3), M(*range(W))  # echo -3 > /sys/bus/ap/apmask
    assert ev(apqn_reserved(apmask, aqmask, 3, 5)) is False  # 03.0005 available to vfio_ap
    assert ev(apqn_reserved(apmask, aqmask, 3, 6)) is False
    assert ev(apqn_reserved(apmask, aqmask, 4, 5)) is True  # 04.0005 still zcrypt's


def test_apqi_cleared_in_aqmask_makes_its_apqns_available() -> None:
    apmask, aqmask = M(*range(W)), ALL_BUT(5)  # echo -5 > /sys/bus/ap/aqmask
    assert ev(apqn_reserved(apmask, aqmask, 3, 5)) is False
    assert ev(apqn_reserved(apmask, aqmask, 4, 5)) is False
    assert ev(apqn_reserved(apmask, aqmask, 4, 6)) is True


def test_available_iff_apid_cleared_or_apqi_cleared_exhaustively_at_4_bits() -> None:
    w = 4
    for apmask in range(1 << w):
        for aqmask in range(1 << w):
            for a in range(w):
                for q in range(w):
                    got = ev(apqn_reserved(MaskConst(w, bits_of(apmask)), MaskConst(w, bits_of(aqmask)), a, q))
                    available = not (apmask >> a & 1) or not (aqmask >> q & 1)
                    assert got is (not available)


def bits_of(v: int) -> list[int]:
    return [i for i in range(v.bit_length()) if v >> i & 1]


def test_apqn_reserved_takes_int_fields() -> None:
    ap, aq = mask_field("apmask", W), mask_field("aqmask", W)
    a, q = int_field("a", 0, W - 1), int_field("q", 0, W - 1)
    e = apqn_reserved(ap.var, aq.var, a.var, q.var)
    vals = {ap: ALL & ~(1 << 3), aq: ALL, a: 3, q: 5}
    assert evaluate(e, vals) is False
    vals[a] = 4
    assert evaluate(e, vals) is True


def test_matrix_reserved_iff_some_apqn_reserved() -> None:
    # mdev matrix {3,4} x {5,6}
    apm, aqm = M(3, 4), M(5, 6)
    assert ev(reserved_for_default(ALL_BUT(3, 4), M(*range(W)), apm, aqm)) is False
    # only APID 3 given away: 04.0005 and 04.0006 are still zcrypt's
    assert ev(reserved_for_default(ALL_BUT(3), M(*range(W)), apm, aqm)) is True
    # APID 3 given away in apmask, APQIs 5 and 6 in aqmask: every APQN of the matrix available
    assert ev(reserved_for_default(ALL_BUT(3), ALL_BUT(5, 6), apm, aqm)) is False
    # an empty matrix reserves nothing
    assert ev(reserved_for_default(M(*range(W)), M(*range(W)), M(), aqm)) is False


def test_rules_refuse_python_control_flow() -> None:
    e = apqn_reserved(M(3), M(5), 3, 5)
    with pytest.raises(ExprError):
        bool(e)


# ----------------------------------------------------------------- sharing


def test_sharing_needs_both_an_apid_and_an_apqi_in_common() -> None:
    assert ev(sharing_conflict(M(3), M(5), M(3), M(6))) is False  # 03.0005 vs 03.0006
    assert ev(sharing_conflict(M(3), M(5), M(4), M(5))) is False  # 03.0005 vs 04.0005
    assert ev(sharing_conflict(M(3), M(5), M(3, 4), M(5, 6))) is True  # both hold 03.0005
    assert ev(sharing_conflict(M(3), M(5), M(), M(5))) is False  # no adapter yet: nothing shared


def test_no_sharing_is_pairwise() -> None:
    apms, aqms = [M(3), M(4), M(3)], [M(5), M(5), M(6)]
    assert ev(rules.no_sharing(apms, aqms)) is True
    assert ev(rules.no_sharing([*apms, M(4)], [*aqms, M(6, 5)])) is False


def test_control_domains_are_never_checked_for_sharing_or_reservation() -> None:
    # the validation rules do not even take the adm: two mdevs may both hold control domain 5
    for fn in (assignment_error, sharing_conflict, reserved_for_default, in_use):
        params = inspect.signature(fn).parameters
        assert not any("adm" in p for p in params), fn.__name__
    # and the shadow adm is just adm ∩ QCI adm, whatever other mdevs hold
    assert ev(filter_cdoms(M(5, 7), M(5, 6))) == 1 << 5


# ------------------------------------------------- apmask/aqmask, in_use


def test_newly_reserved_are_the_bits_being_set() -> None:
    assert bits(ev(newly_reserved(M(0, 1, 2), M(0, 3)))) == {3}
    assert ev(newly_reserved(ALL_BUT(3), ALL_BUT(3, 4))) == 0  # clearing bits needs no callback


def test_apmask_write_reserving_an_assigned_adapter_is_in_use() -> None:
    # mdev0 holds 03.0005; adapters 3 and 4 were given to vfio_ap
    apms, aqms = [M(3)], [M(5)]
    apmask, aqmask = ALL_BUT(3, 4), M(*range(W))
    new = ALL_BUT(4)  # echo +3 > /sys/bus/ap/apmask
    refused = rules.apmask_in_use(apmask, new, aqmask, apms, aqms)
    assert ev(refused) is True
    after, err = rules.mask_store(apmask, new, refused)
    assert ev(after) == ev(apmask) and ev(err) == EBUSY
    # reserving adapter 4 instead is fine: no mdev holds an APQN of adapter 4
    new4 = ALL_BUT(3)
    ok = rules.apmask_in_use(apmask, new4, aqmask, apms, aqms)
    assert ev(ok) is False
    after, err = rules.mask_store(apmask, new4, ok)
    assert ev(after) == ev(new4) and ev(err) == 0


def test_apmask_write_is_not_in_use_when_the_apqi_is_cleared_in_aqmask() -> None:
    # 03.0005 assigned; APID 3 cleared in apmask AND APQI 5 cleared in aqmask
    apms, aqms = [M(3)], [M(5)]
    apmask, aqmask = ALL_BUT(3), ALL_BUT(5)
    # echo +3 > apmask: 03.0005 stays available because APQI 5 is still cleared in aqmask
    assert ev(rules.apmask_in_use(apmask, M(*range(W)), aqmask, apms, aqms)) is False
    # echo +5 > aqmask: 03.0005 stays available because APID 3 is still cleared in apmask
    assert ev(rules.aqmask_in_use(apmask, aqmask, M(*range(W)), apms, aqms)) is False
    # but with apmask all ones, echo +5 > aqmask would give 03.0005 to zcrypt: in use
    assert ev(rules.aqmask_in_use(M(*range(W)), aqmask, M(*range(W)), apms, aqms)) is True


def test_in_use_looks_at_every_mdev() -> None:
    apms, aqms = [M(4), M(3)], [M(6), M(5)]  # mdev0 04.0006, mdev1 03.0005
    assert ev(in_use(M(3), M(*range(W)), apms, aqms)) is True  # mdev1 holds adapter 3
    assert ev(in_use(M(3), M(6), apms, aqms)) is False  # 03.0006 is nobody's
    assert ev(in_use(M(3), M(5), [], [])) is False  # no mdevs


def test_mask_store_without_in_use_commits() -> None:
    after, err = rules.mask_store(ALL_BUT(3), M(*range(W)), false())
    assert ev(after) == ALL and ev(err) == 0


# ------------------------------------------------------ assignment validation


def test_validation_order_reservation_before_sharing() -> None:
    # mdev0 holds 03.0005; mdev1 tries apm {3} x aqm {5}
    others_p, others_q = [M(3)], [M(5)]
    # adapter 3 still reserved for zcrypt (apmask all ones) AND shared: EADDRNOTAVAIL wins
    assert ev(assignment_error(M(3), M(5), M(*range(W)), M(*range(W)), others_p, others_q)) == EADDRNOTAVAIL
    # adapters 3, 4 given to vfio_ap: only the sharing remains
    assert ev(assignment_error(M(3), M(5), ALL_BUT(3, 4), M(*range(W)), others_p, others_q)) == EADDRINUSE
    # 04.0005 and 03.0006 are free
    assert ev(assignment_error(M(4), M(5), ALL_BUT(3, 4), M(*range(W)), others_p, others_q)) == 0
    assert ev(assignment_error(M(3), M(6), ALL_BUT(3, 4), M(*range(W)), others_p, others_q)) == 0


def test_over_provisioning_is_allowed() -> None:
    # APQNs need not exist or be bound: only reservation and sharing matter
    assert ev(assignment_error(M(3, 4), M(5, 6), ALL_BUT(3, 4), M(*range(W)), [], [])) == 0


def test_assign_adapter_sets_or_reverts_the_bit() -> None:
    apmask, aqmask = ALL_BUT(3, 4), M(*range(W))
    # mdev0 holds 03.0005; mdev1 has domain 5 and no adapter
    new, err = assign_adapter(M(), M(5), 3, apmask, aqmask, [M(3)], [M(5)])
    assert (ev(new), ev(err)) == (0, EADDRINUSE)  # bit reverted
    new, err = assign_adapter(M(), M(5), 4, apmask, aqmask, [M(3)], [M(5)])
    assert (bits(ev(new)), ev(err)) == ({4}, 0)
    # adapter 5 is still zcrypt's
    new, err = assign_adapter(M(), M(5), 5, apmask, aqmask, [M(3)], [M(5)])
    assert (ev(new), ev(err)) == (0, EADDRNOTAVAIL)


def test_assign_domain_sets_or_reverts_the_bit() -> None:
    apmask, aqmask = ALL_BUT(3, 4), M(*range(W))
    # mdev1 has adapter 3; mdev0 holds 03.0005
    new, err = assign_domain(M(3), M(), 5, apmask, aqmask, [M(3)], [M(5)])
    assert (ev(new), ev(err)) == (0, EADDRINUSE)
    new, err = assign_domain(M(3), M(), 6, apmask, aqmask, [M(3)], [M(5)])
    assert (bits(ev(new)), ev(err)) == ({6}, 0)


def test_reassigning_a_set_bit_succeeds_without_validation() -> None:
    # adapter 3 already assigned; meanwhile everything is reserved again: still success, no change
    new, err = assign_adapter(M(3), M(5), 3, M(*range(W)), M(*range(W)), [M(3)], [M(5)])
    assert (bits(ev(new)), ev(err)) == ({3}, 0)


def test_assign_above_max_is_enodev() -> None:
    new, err = assign_adapter(M(), M(5), 9, ALL_BUT(9), M(*range(W)), [], [], apm_max=8)
    assert (ev(new), ev(err)) == (0, ENODEV)
    new, err = assign_domain(M(3), M(), 9, ALL_BUT(3), M(*range(W)), [], [], aqm_max=15)
    assert (bits(ev(new)), ev(err)) == ({9}, 0)


def test_one_hot_id_gives_the_same_assignment() -> None:
    for a in (3, 4, 9):
        for max_id in (None, 8):
            by_int = assign_adapter(M(4), M(5), a, ALL_BUT(3), M(*range(W)), [M(3)], [M(6)], apm_max=max_id)
            by_hot = assign_adapter(M(4), M(5), BitOf(W, a), ALL_BUT(3), M(*range(W)), [M(3)], [M(6)], apm_max=max_id)
            assert [ev(x) for x in by_int] == [ev(x) for x in by_hot]


# ------------------------------------------------------------------- filtering


def rows(spec: dict[int, tuple[int, ...]]) -> list[Expr]:
    return [M(*spec.get(a, ())) for a in range(W)]


def test_one_unbound_apqn_drops_the_whole_apid_never_the_domain() -> None:
    # matrix {3,4} x {5,6}; queue 04.0006 is not bound to vfio_ap (e.g. still bound to zcrypt)
    bound = rows({3: (5, 6), 4: (5,)})
    s_apm, s_aqm = filter_matrix(M(3, 4), M(5, 6), M(*range(W)), M(*range(W)), bound)
    assert bits(ev(s_apm)) == {3}  # adapter 4 filtered out entirely (04.0005 too)
    assert bits(ev(s_aqm)) == {5, 6}  # domain 6 stays (03.0006 is bound)


def test_all_bound_passes_the_whole_matrix() -> None:
    bound = rows({3: (5, 6), 4: (5, 6)})
    s_apm, s_aqm = filter_matrix(M(3, 4), M(5, 6), M(*range(W)), M(*range(W)), bound)
    assert (bits(ev(s_apm)), bits(ev(s_aqm))) == ({3, 4}, {5, 6})


def test_filter_intersects_with_the_host_configuration_first() -> None:
    bound = rows({3: (5, 6), 4: (5,)})
    # domain 6 not in the host configuration: 04.0006 is not looked at, adapter 4 stays
    s_apm, s_aqm = filter_matrix(M(3, 4), M(5, 6), M(*range(W)), ALL_BUT(6), bound)
    assert (bits(ev(s_apm)), bits(ev(s_aqm))) == ({3, 4}, {5})
    # adapter 4 not in the host configuration
    s_apm, s_aqm = filter_matrix(M(3, 4), M(5, 6), ALL_BUT(4), M(*range(W)), rows({3: (5, 6)}))
    assert (bits(ev(s_apm)), bits(ev(s_aqm))) == ({3}, {5, 6})


def test_no_domain_means_no_apid_is_filtered() -> None:
    # the kernel's inner loop runs over shadow.aqm: with no domain nothing is checked
    s_apm, s_aqm = filter_matrix(M(3, 4), M(), M(*range(W)), M(*range(W)), rows({}))
    assert (bits(ev(s_apm)), ev(s_aqm)) == ({3, 4}, 0)


def test_bound_rows_as_mapping() -> None:
    s_apm, _ = filter_matrix(M(3, 4), M(5, 6), M(*range(W)), M(*range(W)), {3: M(5, 6)})
    assert bits(ev(s_apm)) == {3}  # no row for adapter 4: nothing bound there


def test_bound_rows_length_is_checked() -> None:
    with pytest.raises(ValueError):
        filter_matrix(M(3), M(5), M(3), M(5), [M(5)])


W8 = 8
masks8 = st.integers(min_value=0, max_value=(1 << W8) - 1)


@settings(max_examples=200, deadline=None)
@given(apm=masks8, aqm=masks8, cfg_apm=masks8, cfg_aqm=masks8, bound=st.lists(masks8, min_size=W8, max_size=W8))
def test_shadow_is_within_matrix_config_and_bound(
    apm: int, aqm: int, cfg_apm: int, cfg_aqm: int, bound: list[int]
) -> None:
    def m(v: int) -> Expr:
        return MaskConst(W8, bits_of(v))

    s_apm, s_aqm = filter_matrix(m(apm), m(aqm), m(cfg_apm), m(cfg_aqm), [m(r) for r in bound])
    sa, sq = ev(s_apm), ev(s_aqm)
    assert sa & ~(apm & cfg_apm) == 0
    assert sq == aqm & cfg_aqm  # domains are never filtered
    for a in range(W8):
        if sa >> a & 1:
            assert sq & ~bound[a] == 0  # every APQN of a kept adapter is bound
        elif (apm & cfg_apm) >> a & 1:
            assert sq & ~bound[a] != 0  # an adapter is dropped only for an unbound APQN
    assert ev(rules.all_bound(s_apm, s_aqm, [m(r) for r in bound])) is True


# ---------------------------------------------------------------- display


def test_display_helpers() -> None:
    assert rules.apqn_str(3, 5) == "03.0005"
    assert rules.apqn_str(0x1F, 0x2A) == "1f.002a"
    assert rules.sysfs_mask(1 << 0, 16) == "0x8000"  # APID 0 is the leftmost bit
    assert rules.sysfs_mask((1 << 3) | (1 << 4), 16) == "0x1800"
    assert rules.bits_str(0b1111000, 16) == "{3-6}"
    assert rules.bits_str(ALL & ~(1 << 3), 16) == "all except {3}"
    assert rules.bits_str(ALL, 16) == "all"
    assert rules.bits_str(0, 16) == "{}"
