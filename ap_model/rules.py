"""The AP mask rules of the AP bus and vfio_ap, written once over mask expressions.

Every function here is pure: it takes mask ``Expr`` s (``checker.lang.expr``; any
width, so the same definition runs on the 8/16-bit masks of the explicit
search and on the 256-bit masks of the proofs) and returns a new ``Expr``.
Python control flow is used only over constants (the width, the number of
mdevs, the APID loop of the filter); everything that depends on a mask goes
through ``And``/``Or``/``If``. Bit ``n`` of a model mask is APID/APQI ``n``
(the kernel's MSB-first ``test_bit_inv`` numbering only matters for the sysfs
hex strings, see ``sysfs_mask``).

Kernel sources (see ../shared/kernel-facts.md §1.3, §1.5, §1.6):

- ``drivers/s390/crypto/ap_bus.c``: ``ap_owned_by_def_drv``,
  ``ap_apqn_in_matrix_owned_by_def_drv``, ``apmask_commit`` /
  ``aqmask_commit`` with ``__verify_card_reservations`` /
  ``__verify_queue_reservations``;
- ``drivers/s390/crypto/vfio_ap_ops.c`` (6.x): ``vfio_ap_mdev_validate_masks``,
  ``vfio_ap_mdev_verify_no_sharing``, ``vfio_ap_mdev_resource_in_use``,
  ``assign_adapter_store`` / ``assign_domain_store``,
  ``vfio_ap_mdev_filter_matrix``, ``vfio_ap_mdev_filter_cdoms``.

Errors are returned as positive errno values in an INT expression (0 =
success); the kernel returns their negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from checker.lang.expr import (
    INT,
    And,
    BitOf,
    Const,
    Expr,
    If,
    Implies,
    Mask,
    MaskConst,
    Not,
    Operand,
    Or,
    lift,
)

# Linux errno values (identical on s390 and x86; asm-generic/errno*.h).
EBUSY = 16
ENODEV = 19
EADDRINUSE = 98
EADDRNOTAVAIL = 99

ERRNO_NAMES = {0: "0", EBUSY: "EBUSY", ENODEV: "ENODEV", EADDRINUSE: "EADDRINUSE", EADDRNOTAVAIL: "EADDRNOTAVAIL"}

# Architecture widths (AP_DEVICES, AP_DOMAINS).
AP_DEVICES = 256
AP_DOMAINS = 256

BoundRows = Sequence[Expr] | Mapping[int, Expr]


# ------------------------------------------------------------------ helpers


def _width(m: Expr) -> int:
    if m.sort.kind != "mask":
        raise TypeError(f"a mask expression is needed, got {m.sort}")
    return m.sort.width


def _same_width(*masks: Expr) -> int:
    widths = {_width(m) for m in masks}
    if len(widths) != 1:
        raise TypeError(f"masks of different widths: {sorted(widths)}")
    return widths.pop()


def mask_or(items: Sequence[Expr], width: int) -> Expr:
    """The union of ``items`` as a balanced tree (depth log2 n, not n)."""
    if not items:
        return Const(0, Mask(width))
    level = list(items)
    while len(level) > 1:
        nxt = [level[i] | level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def subset(a: Expr, b: Expr) -> Expr:
    """a ⊆ b."""
    return (a & ~b).is_empty()


# ------------------------------------------------------- reservation (AP bus)


def apqn_reserved(apmask: Expr, aqmask: Expr, a: Operand | Expr, q: Operand | Expr) -> Expr:
    """APQN (a, q) is reserved for the default (zcrypt) drivers.

    Mirrors ``ap_owned_by_def_drv(card, queue)`` (ap_bus.c): true iff bit
    ``a`` of ``/sys/bus/ap/apmask`` AND bit ``q`` of ``/sys/bus/ap/aqmask``
    are set. Hence the APQN is available to vfio_ap iff its APID is cleared
    in apmask OR its APQI is cleared in aqmask. ``a``/``q`` may be ints or
    INT expressions.
    """
    return And(apmask.has(lift(a, INT)), aqmask.has(lift(q, INT)))


def reserved_for_default(apmask: Expr, aqmask: Expr, apm: Expr, aqm: Expr) -> Expr:
    """Some APQN of ``apm × aqm`` is reserved for the default drivers.

    Mirrors ``ap_apqn_in_matrix_owned_by_def_drv(apm, aqm)`` (ap_bus.c),
    which returns 1 iff an APID of ``apm`` is set in apmask and ``aqm``
    intersects aqmask, i.e. ``(apm & apmask) != 0 and (aqm & aqmask) != 0``.
    """
    _same_width(apmask, apm)
    _same_width(aqmask, aqm)
    return And((apm & apmask).nonempty(), (aqm & aqmask).nonempty())


def sharing_conflict(apm1: Expr, aqm1: Expr, apm2: Expr, aqm2: Expr) -> Expr:
    """The matrices ``apm1 × aqm1`` and ``apm2 × aqm2`` share an APQN.

    Mirrors the per-mdev test of ``vfio_ap_mdev_verify_no_sharing``
    (vfio_ap_ops.c): both ``bitmap_and(apm)`` and ``bitmap_and(aqm)`` are
    non-empty. Control domains (adm) are never part of it.
    """
    _same_width(apm1, apm2)
    _same_width(aqm1, aqm2)
    return And((apm1 & apm2).nonempty(), (aqm1 & aqm2).nonempty())


def no_sharing(apms: Sequence[Expr], aqms: Sequence[Expr]) -> Expr:
    """No APQN is assigned to two of the given mdevs (pairwise, i < j)."""
    n = len(apms)
    if len(aqms) != n:
        raise ValueError("apms and aqms differ in length")
    return And(*[Not(sharing_conflict(apms[i], aqms[i], apms[j], aqms[j])) for i in range(n) for j in range(i + 1, n)])


def none_reserved(apmask: Expr, aqmask: Expr, apms: Sequence[Expr], aqms: Sequence[Expr]) -> Expr:
    """No APQN assigned to any of the given mdevs is reserved for the default drivers."""
    if len(apms) != len(aqms):
        raise ValueError("apms and aqms differ in length")
    return And(*[Not(reserved_for_default(apmask, aqmask, p, q)) for p, q in zip(apms, aqms, strict=True)])


# ------------------------------------------- apmask / aqmask writes, in_use


def newly_reserved(old_mask: Expr, new_mask: Expr) -> Expr:
    """The bits being newly SET by a store to apmask/aqmask.

    Mirrors ``bitmap_andnot(reserved, newapm, ap_perms.apm)`` in
    ``apmask_commit`` (and the aqm twin in ``aqmask_commit``): the APIDs
    (APQIs) whose queues move from non-default drivers to the default ones.
    Cleared bits give queues to vfio_ap and need no callback.
    """
    _same_width(old_mask, new_mask)
    return new_mask & ~old_mask


def in_use(apm: Expr, aqm: Expr, assigned_apms: Sequence[Expr], assigned_aqms: Sequence[Expr]) -> Expr:
    """vfio_ap's ``in_use(apm, aqm)`` verdict: an APQN of ``apm × aqm`` is assigned to an mdev.

    Mirrors ``vfio_ap_mdev_resource_in_use`` → ``vfio_ap_mdev_verify_no_sharing(apm,
    aqm)`` over every mdev on ``matrix_dev->mdev_list`` (whether or not a guest is
    attached). The AP bus calls it as ``in_use(newly_reserved_apm, ap_perms.aqm)``
    for an apmask write (``__verify_card_reservations``) and as
    ``in_use(ap_perms.apm, newly_reserved_aqm)`` for an aqmask write
    (``__verify_queue_reservations``); see ``apmask_in_use``/``aqmask_in_use``.
    """
    if len(assigned_apms) != len(assigned_aqms):
        raise ValueError("assigned_apms and assigned_aqms differ in length")
    return Or(*[sharing_conflict(apm, aqm, p, q) for p, q in zip(assigned_apms, assigned_aqms, strict=True)])


def apmask_in_use(
    old_apmask: Expr, new_apmask: Expr, aqmask: Expr, assigned_apms: Sequence[Expr], assigned_aqms: Sequence[Expr]
) -> Expr:
    """``apmask_commit``: the newly set APIDs × current aqmask hit an assigned APQN."""
    return in_use(newly_reserved(old_apmask, new_apmask), aqmask, assigned_apms, assigned_aqms)


def aqmask_in_use(
    apmask: Expr, old_aqmask: Expr, new_aqmask: Expr, assigned_apms: Sequence[Expr], assigned_aqms: Sequence[Expr]
) -> Expr:
    """``aqmask_commit``: current apmask × the newly set APQIs hit an assigned APQN."""
    return in_use(apmask, newly_reserved(old_aqmask, new_aqmask), assigned_apms, assigned_aqms)


def mask_store(old_mask: Expr, new_mask: Expr, refused: Expr) -> tuple[Expr, Expr]:
    """Commit of an apmask/aqmask store: ``(mask after, errno)``.

    Mirrors ``apmask_commit``/``aqmask_commit``: if the in_use callback
    refuses, the mask is unchanged and the store fails with -EBUSY (6.x;
    early postings of the series returned -EADDRINUSE); otherwise the new
    mask is copied into ``ap_perms``. Pass ``refused=false()`` to model the
    pre-dynamic kernels that had no ``in_use``.
    """
    _same_width(old_mask, new_mask)
    return If(refused, old_mask, new_mask), If(refused, EBUSY, 0)


# ---------------------------------------------------- assignment validation


def assignment_error(
    apm: Expr,
    aqm: Expr,
    apmask: Expr,
    aqmask: Expr,
    other_apms: Sequence[Expr],
    other_aqms: Sequence[Expr],
) -> Expr:
    """Verdict of ``vfio_ap_mdev_validate_masks`` on the mdev's tentative matrix.

    ``apm``/``aqm`` are the mdev's masks with the new bit already set (as the
    kernel does before validating); ``other_*`` are the masks of every OTHER
    mdev. Order as in the kernel: (1) some APQN of ``apm × aqm`` reserved for
    the default drivers (``ap_apqn_in_matrix_owned_by_def_drv``) →
    EADDRNOTAVAIL (99); else (2) ``vfio_ap_mdev_verify_no_sharing`` finds an
    APQN also assigned to another mdev → EADDRINUSE (98); else 0. Control
    domains are never validated.
    """
    return If(
        reserved_for_default(apmask, aqmask, apm, aqm),
        EADDRNOTAVAIL,
        If(in_use(apm, aqm, other_apms, other_aqms), EADDRINUSE, 0),
    )


def _assign(
    mine: Expr,
    bit: Operand | Expr,
    max_id: int | None,
    validate: Callable[[Expr], Expr],
) -> tuple[Expr, Expr]:
    if isinstance(bit, Expr) and bit.sort.kind == "mask":
        # a one-hot mask standing for the id; the caller guarantees one-hotness
        w = _same_width(mine, bit)
        already = (mine & bit).nonempty()
        tentative = mine | bit
        too_big = None if max_id is None else (bit & ~MaskConst(w, list(range(min(max_id + 1, w))))).nonempty()
    else:
        idx = lift(bit, INT)
        already = mine.has(idx)
        tentative = mine.with_bit(idx)
        too_big = None if max_id is None else idx > max_id
    err = validate(tentative)
    new = If(err == 0, tentative, mine)
    # already assigned: success without validation ("bypass unnecessary processing")
    new = If(already, mine, new)
    err = If(already, 0, err)
    if too_big is not None:
        new = If(too_big, mine, new)
        err = If(too_big, ENODEV, err)
    return new, err


def assign_adapter(
    apm: Expr,
    aqm: Expr,
    apid: Operand | Expr,
    apmask: Expr,
    aqmask: Expr,
    other_apms: Sequence[Expr],
    other_aqms: Sequence[Expr],
    apm_max: int | None = None,
) -> tuple[Expr, Expr]:
    """``assign_adapter_store`` (6.x) on the mask level: ``(apm after, errno)``.

    ``apid > apm_max`` → ENODEV (only if ``apm_max`` is given); APID already
    assigned → success, nothing validated; otherwise set the bit, run
    ``assignment_error`` and revert the bit on failure. Linking queues and
    filtering are separate (``filter_matrix``).

    ``apid`` is an int or an INT expression (what the designs use), or a
    one-hot mask expression of the apm's width standing for the same id (what
    the 256-bit proofs use: pure bit-vector formulas solve far faster; the
    proof ``L0`` in ``ap_model.mask_proofs`` shows both forms agree).
    """
    return _assign(
        apm,
        apid,
        apm_max,
        lambda new_apm: assignment_error(new_apm, aqm, apmask, aqmask, other_apms, other_aqms),
    )


def assign_domain(
    apm: Expr,
    aqm: Expr,
    apqi: Operand | Expr,
    apmask: Expr,
    aqmask: Expr,
    other_apms: Sequence[Expr],
    other_aqms: Sequence[Expr],
    aqm_max: int | None = None,
) -> tuple[Expr, Expr]:
    """``assign_domain_store`` (6.x) on the mask level: ``(aqm after, errno)``; see ``assign_adapter``."""
    return _assign(
        aqm,
        apqi,
        aqm_max,
        lambda new_aqm: assignment_error(apm, new_aqm, apmask, aqmask, other_apms, other_aqms),
    )


# ------------------------------------------------------------ shadow APCB


def _bound_row(bound_rows: BoundRows, a: int, width_q: int) -> Expr:
    if isinstance(bound_rows, Mapping):
        row = bound_rows.get(a)
        return Const(0, Mask(width_q)) if row is None else row
    return bound_rows[a]


def filter_matrix(apm: Expr, aqm: Expr, cfg_apm: Expr, cfg_aqm: Expr, bound_rows: BoundRows) -> tuple[Expr, Expr]:
    """Shadow APCB ``(apm, aqm)`` as computed by ``vfio_ap_mdev_filter_matrix`` (6.x).

    1. shadow.apm = apm ∩ cfg_apm, shadow.aqm = aqm ∩ cfg_aqm (host QCI
       configuration ``matrix_dev->info``);
    2. for every APID a of shadow.apm and every APQI q of shadow.aqm: if
       queue (a, q) is not bound to vfio_ap and linked to this mdev
       (``vfio_ap_mdev_get_queue`` returns NULL), clear the WHOLE APID a
       (the architecture cannot filter one APQN). Domains are never dropped.

    ``bound_rows[a]`` is the mask of APQIs q whose queue (a, q) is bound to
    vfio_ap and linked to this mdev (a sequence indexed by APID, or a mapping
    where a missing APID means "no queue bound"). A queue whose last reset
    failed (``reset_status`` not passable) counts as not bound: clear its bit
    in the row. Follows the version that loops over the shadow masks (fix of
    48cae940c31d), not the earlier loop over matrix.apm × matrix.aqm.
    The APID loop is a Python loop over constants; the result is
    ``shadow_apm & ~drop`` with ``drop`` a balanced union of one-bit masks.
    """
    wa = _same_width(apm, cfg_apm)
    wq = _same_width(aqm, cfg_aqm)
    if not isinstance(bound_rows, Mapping) and len(bound_rows) != wa:
        raise ValueError(f"bound_rows needs one row per APID ({wa}), got {len(bound_rows)}")
    shadow_apm = apm & cfg_apm
    shadow_aqm = aqm & cfg_aqm
    drops = []
    for a in range(wa):
        row = _bound_row(bound_rows, a, wq)
        unbound_in_shadow = (shadow_aqm & ~row).nonempty()
        drops.append(If(unbound_in_shadow, BitOf(wa, a), Const(0, Mask(wa))))
    return shadow_apm & ~mask_or(drops, wa), shadow_aqm


def filter_cdoms(adm: Expr, cfg_adm: Expr) -> Expr:
    """Shadow control domains: ``vfio_ap_mdev_filter_cdoms`` — adm ∩ host QCI adm."""
    _same_width(adm, cfg_adm)
    return adm & cfg_adm


def all_bound(apm: Expr, aqm: Expr, bound_rows: BoundRows) -> Expr:
    """Every APQN of ``apm × aqm`` is bound to vfio_ap and linked (per-APID rows)."""
    wa = _width(apm)
    wq = _width(aqm)
    return And(*[Implies(apm.has(a), subset(aqm, _bound_row(bound_rows, a, wq))) for a in range(wa)])


# -------------------------------------------------------------- display


def apqn_str(a: int, q: int) -> str:
    """The kernel's APQN spelling, e.g. ``03.0005`` (``%02lx.%04lx``)."""
    return f"{a:02x}.{q:04x}"


def bits_of(value: int, width: int) -> list[int]:
    return [i for i in range(width) if value >> i & 1]


def bits_str(value: int, width: int) -> str:
    """A mask as a set of bit numbers with ranges, e.g. ``{3,5-7}``, ``{}``, ``all``."""
    if value == (1 << width) - 1:
        return "all"
    bits = bits_of(value, width)
    if len(bits) > width // 2:
        return "all except " + bits_str(((1 << width) - 1) & ~value, width)
    parts: list[str] = []
    i = 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        parts.append(str(bits[i]) if i == j else f"{bits[i]}-{bits[j]}")
        i = j + 1
    return "{" + ",".join(parts) + "}"


def sysfs_mask(value: int, width: int) -> str:
    """The sysfs hex spelling (``/sys/bus/ap/apmask``): MSB-first, bit 0 = leftmost."""
    rev = 0
    for i in range(width):
        if value >> i & 1:
            rev |= 1 << (width - 1 - i)
    digits = (width + 3) // 4
    return "0x" + format(rev << (digits * 4 - width), f"0{digits}x")
