"""What the kernel paths do to the vfio_ap world's state, written once (the base of ``World``).

Object uses with their use-after-free checks (``struct kvm``, ``struct ap_matrix_mdev``), the vfio device's
users, kvm references; the AP domain: queue bindings, reservation (``ap_model.rules``), matrix and shadow
filtering (``vfio_ap_mdev_filter_matrix``/``_filter_cdoms``), CRYCB writes (``kvm_arch_crypto_set_masks``)
with the residual-data tracking of ``reset-before-owner-change``, queue resets, the mdev remove's body, and
the ghosts of ``hook-safe``. ``World`` (ap_model/world.py) declares the fields these read and write; the
kernel paths (ap_model/kernel/, ap_model/eras/) call them inside their atomic blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from checker.lang.block import Block, get_ref, put_ref, use_checks
from checker.lang.expr import INT, And, BitOf, Const, Expr, If, MaskConst, Not, Or, Select, Slot, false, lift, true
from checker.lang.layout import Field
from checker.lang.program import Lock, Pool, ProgramBuilder

from . import rules

if TYPE_CHECKING:
    from .config import Cfg
    from .world import Era

IntOrExpr = int | Expr
Body = Block  # the engine's atomic block of C statements

DRIVERS = ("none", "zcrypt", "vfio_ap")
NODRV, ZCRYPT, VFIO = 0, 1, 2
CLEAN, HOST = 0, 1  # queue data owners; guest v is 2 + v


class WorldState:
    """The fields and objects ``World`` declares, and the operations on them (statements of a Body)."""

    pb: ProgramBuilder
    cfg: Cfg
    era: Era
    nA: int
    nD: int
    vms: list[int]
    mdevs: list[int]
    mslots: list[str]  # the mdevs' names as pointer values name them ("mdev0", ...)
    queues: list[tuple[int, int]]
    kvm: Pool
    mdev: Pool
    KL: list[Lock]
    apmask: Field
    aqmask: Field
    info_apm: Field
    info_aqm: Field
    hw_apm: Field | None
    drv: dict[tuple[int, int], Field]
    vfio_queue: dict[tuple[int, int], Field]
    qdata: dict[tuple[int, int], Field]
    apm: list[Field]
    aqm: list[Field]
    sapm: list[Field]
    saqm: list[Field]
    adm: list[Field]
    sadm: list[Field]
    mkvm: list[Field]
    vopen: list[Field]
    unregistered: list[Field]
    capm: list[Field]
    caqm: list[Field]
    cadm: list[Field]
    csrc: list[Field]
    hook_unsafe: Field

    # ---------------------------------------------------------- objects
    def use_kvm(self, b: Body, v: IntOrExpr, what: str, when: Expr | None = None) -> None:
        use_checks(self.pb, b, self.kvm, v, what, when)

    def use_mdev(self, b: Body, m: IntOrExpr, what: str, when: Expr | None = None) -> None:
        use_checks(self.pb, b, self.mdev, m, what, when)

    def kvm_alive(self, v: IntOrExpr) -> Expr:
        return self.kvm.alive(v)

    def mdev_alive(self, m: IntOrExpr) -> Expr:
        return self.mdev.alive(m)

    def vfio_device_gettable(self, m: int) -> Expr:
        """The vfio core finds mdev ``m``'s device for a new fd (vfio_device_get_from_name; 5.15+ through
        vfio_device_try_get_registration): alive and its remove not past the wait for the users."""
        return And(self.mdev_alive(m), Not(self.unregistered[m].var))

    def vfio_users(self, b: Body, m: int, delta: int, when: Expr | None = None) -> None:
        """open_count (5.15+) / the vfio_device reference of an fd (before) of mdev ``m`` += ``delta``."""
        b.set(self.vopen[m], b[self.vopen[m]] + delta, when=when)

    def kvm_refs(self, v: IntOrExpr) -> Expr:
        return self.kvm.refcount(v)

    def get_kvm(self, b: Body, v: IntOrExpr, when: Expr | None = None) -> None:
        """kvm_get_kvm."""
        get_ref(self.pb, b, self.kvm, v, "kvm_get_kvm", when)

    def put_kvm(self, b: Body, v: IntOrExpr, when: Expr | None = None) -> None:
        """kvm_put_kvm: the last reference runs kvm_destroy_vm, which takes kvm->lock (and tears down the
        kvm-vfio device, which calls back into vfio) before freeing the struct kvm: the last put waits for
        that kvm->lock, and by a thread holding it never returns (issue 8 #6)."""
        put_ref(self.pb, b, self.kvm, v, "kvm_put_kvm", when, destroy_lock=self.KL, destructor="kvm_destroy_vm")

    # ---------------------------------------------------------- AP domain
    def bound(self, i: int, j: int, b: Body | None = None) -> Expr:
        """vfio_ap has a queue object for APQN (i, j): what vfio_ap's own code reads to ask "bound to
        vfio_ap" (vfio_ap_mdev_get_queue in the mdev's qtable; before the dynamic series the vfio_ap
        driver's klist of bound devices), never the driver core's dev->driver."""
        f = self.vfio_queue[i, j]
        return b[f] if b else f.var

    def find_queue(self, i: int, j: int, b: Body | None = None) -> Expr:
        """vfio_ap_find_queue (as in 5.19, since "use new AP bus interface to search for queue devices", v15
        02/13 of Apr 2021: ap_get_qdev): the queue device's dev->driver compared with vfio_ap's driver, read
        without the device lock, then its drvdata: reads both the driver core's field and vfio_ap's record.
        (Before that patch, 5.10 - 5.12, it walked the vfio_ap driver's klist with driver_find_device, no
        dev->driver; the model keeps the read for every pre-dynamic era: no bundled spec of theirs reports a
        race on it.)"""
        f = self.drv[i, j]
        return And((b[f] if b else f.var) == VFIO, self.bound(i, j, b))

    def bound_rows(self, b: Body) -> list[Expr]:
        """Per adapter, the mask of domains whose queue is bound to vfio_ap: a union of one-bit masks
        (no order among the domains, so a symmetry swapping domains sees the same row)."""
        return [rules.mask_or([If(self.bound(i, j, b), BitOf(self.nD, j), MaskConst(self.nD))
                               for j in range(self.nD)], self.nD) for i in range(self.nA)]

    def kvm_of(self, m: IntOrExpr) -> Expr:
        """matrix_mdev->kvm of the mdev ``m`` (a slot or an expression): a kvm slot, -1 for NULL."""
        return Select([f.var for f in self.mkvm], m, -1)

    def reserved(self, b: Body | None, i: int, j: int) -> Expr:
        am = b[self.apmask] if b else self.apmask.var
        qm = b[self.aqmask] if b else self.aqmask.var
        return rules.apqn_reserved(am, qm, i, j)

    def in_matrix(self, m: int, i: int, j: int, b: Body | None = None) -> Expr:
        a = b[self.apm[m]] if b else self.apm[m].var
        q = b[self.aqm[m]] if b else self.aqm[m].var
        return And(self.mdev_alive(m), a.has(i), q.has(j))

    def owner_mdev(self, i: int, j: int, b: Body | None = None) -> Expr:
        """The mdev whose matrix holds APQN (i, j) (``vfio_ap_mdev_for_queue``), or -1: a slot of the mdevs'
        pointer domain, renamed with them."""
        slots = tuple(self.mslots)
        return self.first_mdev(lambda m: self.in_matrix(m, i, j, b), lambda m: Slot(m, slots), lift(-1, INT))

    def first_mdev(self, test: Callable[[int], Expr], value: Callable[[int], Expr], default: Expr) -> Expr:
        """``value`` of the first mdev of ``matrix_dev->mdev_list`` (list_for_each_entry: creation order) that
        passes ``test``, else ``default``: one case per mdev, each the others renamed."""
        out = default
        for m in reversed(self.mdevs):
            out = If(test(m), value(m), out)
        return out

    def in_crycb(self, v: int, i: int, j: int, b: Body | None = None) -> Expr:
        a = b[self.capm[v]] if b else self.capm[v].var
        q = b[self.caqm[v]] if b else self.caqm[v].var
        return And(a.has(i), q.has(j))

    def filter(self, b: Body, m: int) -> tuple[Expr, Expr]:
        """vfio_ap_mdev_filter_matrix (rules.filter_matrix) over the current body values."""
        return rules.filter_matrix(b[self.apm[m]], b[self.aqm[m]], b[self.info_apm], b[self.info_aqm],
                                   self.bound_rows(b))

    def set_masks(self, b: Body, v: IntOrExpr, apm: Expr, aqm: Expr, src: IntOrExpr,
                  when: Expr | None = None) -> None:
        """kvm_arch_crypto_set_masks: vCPUs blocked, APCB written, VSIE restart, unblocked.

        Ghost effects: ``crycb_from`` records whose masks the CRYCB carries; every
        APQN entering the guest that holds no one's data becomes the guest's."""
        c = when if when is not None else true()
        self.use_kvm(b, v, "kvm_arch_crypto_set_masks", when)
        b.set_at(self.capm, v, apm, when=c)
        b.set_at(self.caqm, v, aqm, when=c)
        # the control domains go with the source mdev's masks (its shadow adm, or its matrix adm pre-dynamic)
        adms = [b[f] for f in (self.sadm if self.era.dynamic else self.adm)]
        b.set_at(self.cadm, v, Select(adms, src, MaskConst(self.nD)) if adms else MaskConst(self.nD), when=c)
        b.set_at(self.csrc, v, lift(src, INT) if isinstance(src, int) else src, when=c)
        for i, j in self.queues:
            d = self.qdata[i, j]
            b.set(d, self.guest_data(v, b[d]), when=And(c, apm.has(i), aqm.has(j), b[d] == CLEAN))

    def guest_data(self, v: IntOrExpr, default: Expr) -> Expr:
        """The queue data owner naming the guest of kvm ``v`` (a slot or a pointer), ``default`` for NULL: one
        case per VM, each the others renamed (a loop over the VM pool, not a fold through the old value)."""
        return Select([lift(2 + k, INT) for k in self.vms], v, default)

    def clear_masks(self, b: Body, v: IntOrExpr, when: Expr | None = None) -> None:
        """kvm_arch_crypto_clear_masks."""
        self.set_masks(b, v, MaskConst(self.nA), MaskConst(self.nD), -1, when)

    def configured(self, i: int, j: int, b: Body | None = None) -> Expr:
        """APQN (i, j) is in vfio_ap's copy of the host's AP configuration (matrix_dev->info): what vfio_ap
        code tests (filtering, vfio_ap_mdev_remove_queue's "reset only if configured", b9bd10c43456)."""
        am = b[self.info_apm] if b else self.info_apm.var
        qm = b[self.info_aqm] if b else self.info_aqm.var
        return And(am.has(i), qm.has(j))

    def hw_configured(self, i: int, j: int, b: Body | None = None) -> Expr:
        """APQN (i, j) is in the machine's AP configuration: what a ZAPQ acts on (no kernel copy of QCI). The
        ghost ``ghost.hw_config.apm`` where a thread changes the configuration (``World.ap_scan``), else the
        spec's configuration, a constant; the model changes adapters only, so the domains are the spec's."""
        dom = j in self.cfg.config_aqm
        if self.hw_apm is None:
            return true() if i in self.cfg.config_apm and dom else false()
        am = b[self.hw_apm] if b else self.hw_apm.var
        return am.has(i) if dom else false()

    def reset_queue(self, b: Body, i: int, j: int, when: Expr | None = None) -> None:
        """ZAPQ (+ TAPQ until done) on APQN (i, j): vfio_ap_mdev_reset_queue, zcrypt's ap_zapq. In the machine's
        configuration the queue then holds no one's data; outside it the ZAPQ answers rc 01 and has no effect
        (its contents are out of every program's reach; the machine zeroizes the card when it returns:
        ``adapter_added``)."""
        hw = self.hw_configured(i, j, b)
        if not (isinstance(hw, Const) and not hw.value):  # a queue the machine never has: nothing to write
            b.set(self.qdata[i, j], CLEAN, when=And(hw, when) if when is not None else hw)

    def filter_cdoms(self, b: Body, m: int, when: Expr | None = None) -> Expr:
        """vfio_ap_mdev_filter_cdoms: shadow.adm = matrix.adm & host adm (the model's host configuration has
        one set of domains, ``matrix_dev->info.aqm``, for usage and control). Returns "changed"."""
        new = b[self.adm[m]] & b[self.info_aqm]
        changed = Not(new == b[self.sadm[m]])
        b.set(self.sadm[m], new, when=when)
        return changed if when is None else And(when, changed)

    def guest_masks(self, m: int) -> tuple[Expr, Expr]:
        """What set_kvm hands to kvm_arch_crypto_set_masks: the shadow APCB where the era has one (dynamic
        series), else the assigned matrix."""
        if self.era.dynamic:
            return self.sapm[m].var, self.saqm[m].var
        return self.apm[m].var, self.aqm[m].var

    def remove_mdev_body(self, b: Body, m: int, when: Expr | None = None) -> None:
        """vfio_ap_mdev_remove under the matrix lock: reset the mdev's queues, empty its matrix
        (and shadow), list_del and kfree(matrix_mdev). Shared by every era; ``when``: only if it holds."""
        self.use_mdev(b, m, "matrix_mdev (remove)", when)
        self.reset_mdev_queues(b, m, when=when)
        upd, chk = self.pb.free(self.mdev, m)
        for f, v in upd.items():
            b.set(f, v, when=when)
        for c in chk:
            b.check(c.bad if when is None else And(when, c.bad), c.prop, c.message)
        fields = [(self.apm[m], self.nA), (self.aqm[m], self.nD), (self.adm[m], self.nD)]
        if self.era.dynamic:
            fields += [(self.sapm[m], self.nA), (self.saqm[m], self.nD), (self.sadm[m], self.nD)]
        for f, width in fields:
            b.set(f, MaskConst(width), when=when)

    def reset_mdev_queues(self, b: Body, m: int, rows: Expr | None = None, cols: Expr | None = None,
                          when: Expr | None = None) -> None:
        """Reset the queues bound to vfio_ap in apm x aqm of mdev ``m`` (or the given rows/cols).

        The dynamic series walks the mdev's qtable (vfio_ap's records); before it vfio_ap_mdev_reset_queues
        looks each APQN of the matrix up with vfio_ap_find_queue (dev->driver, then drvdata)."""
        ra = rows if rows is not None else b[self.apm[m]]
        ca = cols if cols is not None else b[self.aqm[m]]
        for i, j in self.queues:
            cond = And(ra.has(i), ca.has(j), self.bound(i, j, b) if self.era.dynamic else self.find_queue(i, j, b))
            self.reset_queue(b, i, j, And(cond, when) if when is not None else cond)

    def hook_target_freed(self, b: Body, m: IntOrExpr, when: Expr) -> None:
        """Ghost for ``hook-safe``, set BEFORE the dereference (a memory-safety violation ends the path):
        the hook/data leads the vCPU to an mdev that is not alive (reads only the pool state)."""
        b.set(self.hook_unsafe, True, when=And(when, Not(self.mdev_alive(m))))

    def hook_target_detached(self, b: Body, v: int, m: IntOrExpr, when: Expr) -> None:
        """Ghost for ``hook-safe`` (under the matrix lock): the mdev reached by the vCPU of kvm ``v``
        is attached to another KVM, or to a freed one."""
        mk = Select([b[f] for f in self.mkvm], m, -1)
        bad = Or(And(mk != -1, mk != v), And(mk != -1, Not(self.kvm_alive(mk))))
        b.set(self.hook_unsafe, True, when=And(when, self.mdev_alive(m), bad))

