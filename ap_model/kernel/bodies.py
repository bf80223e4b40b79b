"""Statement-level bodies of vfio_ap kernel functions, run inside a caller's atomic block (written once):
assignment validation, shadow filtering with the guest update, hot unplug of an adapter or a domain."""

from __future__ import annotations

from checker.lang.expr import And, Expr, If, MaskConst, Not, Or
from checker.lang.program import ThreadBuilder

from .. import rules
from ..world import Body, E, World


def errno_of(err: Expr) -> Expr:
    """rules' Linux errno values -> the model's ret enum."""
    return If(err == rules.EADDRNOTAVAIL, E["EADDRNOTAVAIL"],
              If(err == rules.EADDRINUSE, E["EADDRINUSE"], If(err == rules.ENODEV, E["ENODEV"], E["0"])))


def assign_body(w: World, b: Body, t: ThreadBuilder, m: int, kind: str, x: int,
                when: Expr | None = None) -> Expr:
    """Set the bit, validate (reserved -> EADDRNOTAVAIL, sharing -> EADDRINUSE), revert on error; only
    ``when`` it holds (else nothing: the caller returned before).

    Returns "assignment done" (the bit is now set). Linking queues is derived
    (a queue is linked iff bound to vfio_ap and in the matrix: the filter reads vfio_ap's record).
    Not modelled as an access: vfio_ap_mdev_link_apqn's vfio_ap_find_queue compares the new row's or
    column's dev->driver without the device lock; a step's read footprint does not depend on the state, so
    it would be an access even where validation refused and the kernel never links."""
    w.use_mdev(b, m, "matrix_mdev (sysfs attribute)")
    others = [o for o in w.mdevs if o != m]
    zero_a, zero_q = MaskConst(w.nA), MaskConst(w.nD)
    oapm = [If(w.mdev_alive(o), b[w.apm[o]], zero_a) for o in others]
    oaqm = [If(w.mdev_alive(o), b[w.aqm[o]], zero_q) for o in others]
    fn = rules.assign_adapter if kind == "adapter" else rules.assign_domain
    mine, other = (w.apm[m], w.aqm[m]) if kind == "adapter" else (w.aqm[m], w.apm[m])
    apm, aqm = b[w.apm[m]], b[w.aqm[m]]
    new, err = fn(apm, aqm, x, b[w.apmask], b[w.aqmask], oapm, oaqm)
    b.set(mine, new, when=when)
    f = w.ret(t)
    if f is not None:
        b.set(f, errno_of(err), when=when)
    del other
    return err == 0 if when is None else And(when, err == 0)


def assign_refusals(w: World, b: Body, t: ThreadBuilder, ok: Expr) -> list[tuple[Expr | None, str]]:
    """What a trace shows when ``assign_body`` refused: the errno tells which check (without errno
    tracking, only that it refused)."""
    ret = w.ret(t)
    if ret is None:
        return [(Not(ok), "validate: refused (errno not tracked)")]
    return [(And(Not(ok), b[ret] == E["EADDRNOTAVAIL"]), "validate: APQN reserved for zcrypt: -EADDRNOTAVAIL"),
            (And(Not(ok), b[ret] == E["EADDRINUSE"]), "validate: APQN assigned to another mdev: -EADDRINUSE")]


def _and(*xs: Expr | None) -> Expr:
    return And(*[x for x in xs if x is not None])


def refresh(w: World, b: Body, m: int, when: Expr | None = None, apply: bool = True,
            reset_filtered: bool = True) -> tuple[Expr, Expr, Expr]:
    """vfio_ap_mdev_filter_matrix -> shadow; if changed and attached: kvm_arch_crypto_set_masks;
    reset the queues of APIDs filtered out (f848cba767e5). Returns (changed, shadow_apm, shadow_aqm)."""
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    na, nq = w.filter(b, m)
    b.set(w.sapm[m], na, when=when)
    b.set(w.saqm[m], nq, when=when)
    changed = _and(when, Not(And(na == old_a, nq == old_q)))
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, na, nq, m, when=And(changed, mk != -1))
    if reset_filtered:
        w.reset_mdev_queues(b, m, rows=old_a & ~na, cols=old_q, when=_and(when, mk != -1))
    return changed, na, nq


def unplug_adapter(w: World, b: Body, m: int, x: int, when: Expr | None = None, apply: bool = True,
                   reset: bool = True) -> Expr:
    """Clear APID ``x`` from the shadow (if there) and update the guest; reset the unplugged queues."""
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    was = _and(when, old_a.has(x))
    b.set(w.sapm[m], old_a.without_bit(x), when=when)
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, b[w.sapm[m]], old_q, m, when=And(was, mk != -1))
    if reset:
        w.reset_mdev_queues(b, m, rows=MaskConst(w.nA, [x]), cols=old_q, when=was)
    return was


def unplug_domain(w: World, b: Body, m: int, x: int, when: Expr | None = None, apply: bool = True,
                  reset: bool = True) -> Expr:
    old_a, old_q = b[w.sapm[m]], b[w.saqm[m]]
    was = _and(when, old_q.has(x))
    b.set(w.saqm[m], old_q.without_bit(x), when=when)
    mk = b[w.mkvm[m]]
    if apply:
        w.set_masks(b, mk, old_a, b[w.saqm[m]], m, when=And(was, mk != -1))
    if reset:
        w.reset_mdev_queues(b, m, rows=old_a, cols=MaskConst(w.nD, [x]), when=was)
    return was


def attach(w: World, b: Body, m: int, vm: int, apm: Expr, aqm: Expr) -> Expr:
    """vfio_ap_mdev_set_kvm's critical section: another mdev already has this kvm -> -EPERM (returned:
    the condition); else kvm_get_kvm, matrix_mdev->kvm = kvm, kvm_arch_crypto_set_masks(apm, aqm)."""
    other = Or(*[And(w.mdev_alive(o), w.mkvm[o].var == vm) for o in w.mdevs if o != m])
    ok = Not(other)
    w.get_kvm(b, vm, when=ok)
    b.set(w.mkvm[m], vm, when=ok)
    w.set_masks(b, vm, apm, aqm, m, when=ok)
    return other
