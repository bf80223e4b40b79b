"""The vfio_ap world shared by every design: AP resources, KVM, matrix_mdevs, locks, properties.

Source of truth: ../shared/kernel-facts.md (§1 domain, §2 eras). A ``World`` is
built once per scenario from the spec's constants: it declares the state
fields, locks, wait flags and object pools of the era's design, and offers the
building blocks the designs' kernel paths are written with:

- ``Body``: a sequential block of C statements executed atomically (one step);
  reads see earlier writes of the same block, so a critical section reads like
  the kernel code it models;
- lock helpers that name the lock instance chosen by state (the ``kvm->lock`` of
  ``matrix_mdev->kvm``) and add use-after-free checks on locks living inside
  the ``struct kvm``;
- (inherited from ``ap_model.domain.WorldState``) object uses, kvm references,
  the vfio device's users and the domain statements: APQN membership,
  reservation (``ap_model.rules``), shadow filtering, CRYCB writes
  (``kvm_arch_crypto_set_masks``) with the residual-data tracking used by
  ``reset-before-owner-change``, resets;
- the named properties of the vfio_ap model.

Abstractions (all designs): adapters and domains are the few the spec lists
(real numbers for display, bit i = i-th listed resource); the host's control
domains are its usage domains (``matrix_dev->info.aqm``); a queue's reset is instantaneous (no ``reset_work``);
IRQ enablement (NIB pinning, GISC) is reduced to "the vCPU reaches the mdev";
SRCU and the vCPU kick of ``kvm_s390_vcpu_block_all`` are not modelled (they
wait on no lock: a vCPU inside an intercept is out of SIE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checker.lang.block import (
    Use,
    emit,
    eq,
    family_name,
    is_rw,
    true,
    wait_clear,
)
from checker.lang.expr import BOOL, INT, Const, Expr, If, Not, Select, lift
from checker.lang.layout import (
    MASK_BITMAP,
    MASK_ELEMENTS,
    MASK_LABELS,
    THREAD_LOCAL,
    Field,
    bool_field,
    enum_field,
    int_field,
    mask_field,
    ref_field,
)
from checker.lang.program import Lock, ProgramBuilder, RwSem, ThreadBuilder, Wait

from . import rules
from .config import Cfg, parse_cfg
from .domain import CLEAN, DRIVERS, HOST, NODRV, VFIO, ZCRYPT, Body, IntOrExpr, WorldState

ERRNO = ("0", "EPERM", "EAGAIN", "EBUSY", "EACCES", "ENODEV", "EINVAL", "EADDRINUSE", "EADDRNOTAVAIL",
         "EOPNOTSUPP", "EBADF")
E = {n: i for i, n in enumerate(ERRNO)}
HOOK_OWNERS = ("NULL", "vfio_ap", "other_driver")
# a VM fd: open; held by a VM ioctl in flight (fdget to return: the file's extra reference); closed
VM_FD = ("open", "ioctl", "closed")
VM_IOCTLS = ("set_apie", "pv_switch")  # the operations that are ioctls on the VM fd (kvm_vm_ioctl)
# the operations that change the machine's AP configuration (each with the AP bus scan that sees it)
HOST_CONFIG_CHANGES = ("adapter_standby", "adapter_online")
# the mdev attribute files a spec writes (kernfs_fop_write_iter -> the vfio_ap store)
MDEV_ATTRIBUTES = ("assign_adapter", "unassign_adapter", "assign_domain", "unassign_domain", "assign_control_domain",
                   "unassign_control_domain")


@dataclass(frozen=True)
class Era:
    """The design choices that shape the state and the locks."""

    dynamic: bool  # shadow APCB, hot plug, in_use (dynamic-configuration series)
    hook: str  # "module" (unlocked per-mdev hook, a0-a2) | "rwsem" (per-KVM, HR) | "global" (v17 patch 01)
    busy: bool  # matrix_mdev->kvm_busy open-coded lock (a2, v15, v16)
    matrix_lock: str  # "matrix_dev->lock" or "matrix_dev->mdevs_lock"
    guests_lock: str  # "" | "rwsem" (v17) | "mutex" (final)
    vfio_lock: bool  # vfio core holds a group/dev_set lock around open/close (v5.15+)
    vfio_kvm_ref: bool  # vfio core holds its own kvm reference while open (v6.2+)


SYSFS_MASK_BITS = 256  # AP_DEVICES, AP_DOMAINS: apmask_show prints "0x%016lx%016lx%016lx%016lx"


class World(WorldState):
    """State, locks and helpers of one scenario for one era."""

    # v17's global hook registry (era.hook == "global")
    hook_reg: Field
    registrations: Field

    def __init__(self, pb: ProgramBuilder, cfg: Cfg, era: Era) -> None:
        self.pb, self.cfg, self.era = pb, cfg, era
        nA, nD = len(cfg.adapters), len(cfg.domains)
        self.nA, self.nD = nA, nD
        self.vms = list(range(cfg.vms))
        self.mdevs = list(range(cfg.mdevs))
        self.queues = [(i, j) for i in range(nA) for j in range(nD)]
        # ---------------- locks (kernel names; classes for lockdep)
        self.P = pb.mutex("ap_perms_mutex")
        self.G: Lock | RwSem | None = None
        if era.guests_lock == "rwsem":
            self.G = pb.rwsem("matrix_dev->guests_lock")
        elif era.guests_lock == "mutex":
            self.G = pb.mutex("matrix_dev->guests_lock")
        self.GHL = pb.mutex("pqap_hook_lock") if era.hook == "global" else None
        self.M = pb.mutex(era.matrix_lock)
        self.KL = [pb.mutex(f"kvm{v}->lock", cls="kvm->lock") for v in self.vms]
        self.VM = [[pb.mutex(f"kvm{v}.vcpu{c}->mutex", cls="vcpu->mutex") for c in range(cfg.vcpus)]
                   for v in self.vms]
        self.HR = ([pb.rwsem(f"kvm{v}->arch.crypto.pqap_hook_rwsem", cls="kvm->arch.crypto.pqap_hook_rwsem")
                    for v in self.vms] if era.hook == "rwsem" else [])
        self.VG = ([pb.mutex(f"mdev{m}.vfio_group->group_lock", cls="vfio_group->group_lock") for m in self.mdevs]
                   if era.vfio_lock else [])
        self.BUSY = [pb.flag(f"mdev{m}->kvm_busy") for m in self.mdevs] if era.busy else []
        # ---------------- objects
        # before 5.15 every open of an mdev calls set_kvm (kvm_get_kvm again: the second is leaked)
        gets = [1 if era.vfio_lock else max(1, int(m in cfg.attached) + cfg.opens.get(m, 0)) for m in self.mdevs]
        refmax = 1 + cfg.vcpus + sum(gets) * (2 if era.vfio_kvm_ref else 1)
        self.kvm = pb.pool("kvm", [f"kvm{v}" for v in self.vms], refcount_max=refmax, ctype="struct kvm",
                           init_alive=self.vms, init_refs=1)
        for v in self.vms:  # VM fd + vCPU fds + vfio_ap's ref (+ vfio core's ref) when attached
            attached = v in cfg.attached.values()
            self.kvm.refs[v].init = 1 + cfg.vcpus + (1 + int(era.vfio_kvm_ref) if attached else 0)  # type: ignore[index]
        self.mdev = pb.pool("matrix_mdev", [f"mdev{m}" for m in self.mdevs], init_alive=cfg.created,
                            ctype="struct ap_matrix_mdev")
        kslots = [f"kvm{v}" for v in self.vms]
        mslots = [f"mdev{m}" for m in self.mdevs]
        self.kslots, self.mslots = kslots, mslots
        M = self.M
        # ---------------- host AP configuration and AP bus
        self.apmask = self._var(mask_field("ap_perms.apm", nA, _bits(cfg.apmask)), [self.P])
        self.aqmask = self._var(mask_field("ap_perms.aqm", nD, _bits(cfg.aqmask)), [self.P])
        for kind, f in (("ap", self.apmask), ("aq", self.aqmask)):
            if kind in cfg.sysfs_hex:  # written in hex: shown as apmask_show/aqmask_show print it
                f.meta[MASK_BITMAP] = SYSFS_MASK_BITS
        info_locks = [self.G] if self.G is not None else [M]
        self.info_apm = self._var(mask_field("matrix_dev->info.apm", nA, _bits(cfg.config_apm)), info_locks)
        self.info_aqm = self._var(mask_field("matrix_dev->info.aqm", nD, _bits(cfg.config_aqm)), info_locks)
        # two pieces of kernel memory per queue device: the driver core's dev->driver (``drv``: written by
        # really_probe / __device_release_driver, read by the AP bus and the driver core) and vfio_ap's own
        # record of the queue (``vfio_queue``: the struct vfio_ap_queue that vfio_ap_mdev_probe_queue allocates
        # as the device's drvdata and links into the mdev's qtable, freed by vfio_ap_mdev_remove_queue; before
        # the dynamic series also the vfio_ap driver's klist of bound devices). vfio_ap code reads the record,
        # not dev->driver (filter, unlink/unplug, resets over the qtable), so zcrypt's bind of a queue, which
        # writes dev->driver only, does not touch what an unassign reads. Both are written in the same steps:
        # the record exists exactly while the queue is bound to vfio_ap (lemma-binding-steps).
        self.drv: dict[tuple[int, int], Field] = {}
        self.vfio_queue: dict[tuple[int, int], Field] = {}
        # the driver core's device lock of a queue device two threads reach (cfg.device_locked): it serializes
        # their driver detach and attach (ap_model/kernel/ap_bus.py); lockdep does not validate it
        self.DEV: dict[tuple[int, int], Lock] = {}
        self.dev_dead: dict[tuple[int, int], Field] = {}
        self.qdata: dict[tuple[int, int], Field] = {}
        owners = ("clean", "host") + tuple(kslots)
        for i, j in self.queues:
            name = f"ap_queue[{rules.apqn_str(cfg.adapters[i], cfg.domains[j])}]"
            incfg = i in cfg.config_apm and j in cfg.config_aqm
            reserved = i in cfg.apmask and j in cfg.aqmask
            d = NODRV if not incfg else (ZCRYPT if reserved else VFIO)
            self.drv[i, j] = self._var(enum_field(f"{name}.driver", DRIVERS, DRIVERS[d]))
            self.vfio_queue[i, j] = self._var(bool_field(f"{name}.vfio_ap_queue", d == VFIO))
            if (i, j) in cfg.device_locked:  # and device_del's kill_device, under that lock (race-checked as
                # the driver field: __device_attach reads it in the step that takes the lock); a queue out of the
                # configuration at start has no registered device to probe: dead until device_register
                self.DEV[i, j] = pb.mutex(f"{name}->device.mutex", cls="dev->mutex")
                self.dev_dead[i, j] = self._var(bool_field(f"{name}->device.dead", not incfg))
            data = "host" if d == ZCRYPT else "clean"
            for m, v in cfg.attached.items():
                if self._initially_in_guest(m, i, j):
                    data = kslots[v]
            self.qdata[i, j] = self._var(enum_field(f"{name}.data", owners, data))
        # ---------------- matrix_mdevs
        self.apm, self.aqm, self.sapm, self.saqm, self.mkvm, self.vopen, self.closing = [], [], [], [], [], [], []
        self.unregistered: list[Field] = []
        self.adm: list[Field] = []
        self.sadm: list[Field] = []
        self.pending: list[Field] = []
        self.vkvm: list[Field] = []
        mkvm_locks = [x for x in (self.G, M) if x is not None]
        # the vfio device's users: 5.15+ the vfio core's open_count (fds, under group_lock/dev_set->lock);
        # before, the vfio_device kref minus the driver's own: one per fd and per GET_DEVICE_FD in progress
        self.open_max = max([1] + [int(m in cfg.attached) + cfg.opens.get(m, 0) for m in self.mdevs])
        users = "open_count" if era.vfio_lock else "refs"
        for m in self.mdevs:
            a_idx, d_idx = cfg.matrix.get(m, ([], []))
            # written under guests_lock and the matrix lock, read under either: the update-lock helpers
            # (get_update_locks_by_apqn) read matrix.apm/aqm under guests_lock only (kernel-facts §5 C4)
            self.apm.append(self._var(mask_field(f"mdev{m}.matrix.apm", nA, _bits(a_idx)), mkvm_locks))
            self.aqm.append(self._var(mask_field(f"mdev{m}.matrix.aqm", nD, _bits(d_idx)), mkvm_locks))
            if era.dynamic:
                sa, sq = self._initial_shadow(m)
                self.sapm.append(self._var(mask_field(f"mdev{m}.shadow_apcb.apm", nA, sa), [M]))
                self.saqm.append(self._var(mask_field(f"mdev{m}.shadow_apcb.aqm", nD, sq), [M]))
            # control domains (matrix.adm; shadow_apcb.adm in the dynamic eras): none assigned at start
            self.adm.append(self._var(mask_field(f"mdev{m}.matrix.adm", nD, 0), [M]))
            if era.dynamic:
                self.sadm.append(self._var(mask_field(f"mdev{m}.shadow_apcb.adm", nD, 0), [M]))
            self.mkvm.append(self._var(ref_field(f"mdev{m}.kvm", kslots, cfg.attached.get(m, -1)), mkvm_locks))
            self.vopen.append(self._var(
                int_field(f"mdev{m}.vfio_device.{users}", 0, self.open_max, int(m in cfg.attached)),
                unsynchronized="vfio core internals: open_count under dev_set->lock, the remove's wait on the "
                               "atomic registration refcount (5.15+); before, the vfio_device kref (atomic)"))
            # the mdev's remove is past its wait for the device's users (vfio_unregister_group_dev: the
            # registration refcount reached 0; vfio_del_group_dev: the last vfio_device_put took the device
            # off the group's device_list): a new open finds no device
            self.unregistered.append(self._var(
                bool_field(f"mdev{m}.vfio_device.unregistered"),
                unsynchronized="vfio_device_try_get_registration's refcount_inc_not_zero (5.15+) / the "
                               "device_list lookup under group->device_lock (before) against the last put"))
            self.closing.append(self._var(bool_field(f"ghost.mdev{m}.closing")))
        # ---------------- KVM side
        self.capm, self.caqm, self.csrc, self.hook, self.data = [], [], [], [], []
        self.cadm: list[Field] = []
        for v in self.vms:
            m_att = [m for m, vv in cfg.attached.items() if vv == v]
            ca, cq = self._initial_crycb(m_att[0]) if m_att else (0, 0)
            self.capm.append(self._var(mask_field(f"kvm{v}.crycb.apm", nA, ca), [self.KL[v]]))
            self.caqm.append(self._var(mask_field(f"kvm{v}.crycb.aqm", nD, cq), [self.KL[v]]))
            self.cadm.append(self._var(mask_field(f"kvm{v}.crycb.adm", nD, 0), [self.KL[v]]))
            self.csrc.append(self._var(ref_field(f"ghost.kvm{v}.crycb_from", mslots, m_att[0] if m_att else -1)))
            if era.hook in ("module", "rwsem"):
                locks = [self.HR[v]] if era.hook == "rwsem" else [M]
                self.hook.append(self._var(ref_field(f"kvm{v}->arch.crypto.pqap_hook", mslots,
                                                     m_att[0] if m_att else -1), locks))
            else:
                self.data.append(self._var(ref_field(f"kvm{v}->arch.crypto.data", mslots,
                                                     m_att[0] if m_att else -1), [M]))
        # APIE: kvm->arch.crypto.apie (under kvm->lock) and its copy in each vCPU's SIE control block
        # (ECA_APIE, written by kvm_s390_vcpu_crypto_setup under kvm->lock, read by priv.c handle_pqap
        # under vcpu->mutex only: an unsynchronized word access in the kernel, so not race-checked here)
        # (APIE can only be on where the host has AP instructions)
        on0 = {v: v not in cfg.apie_off and cfg.ap_instructions for v in self.vms}
        self.apie = [self._var(bool_field(f"kvm{v}->arch.crypto.apie", on0[v]), [self.KL[v]]) for v in self.vms]
        self.eca_apie = [[self._var(bool_field(f"kvm{v}.vcpu{c}->sie_block->eca.APIE", on0[v]),
                                    unsynchronized="a word of the SIE control block, rewritten by "
                                    "kvm_s390_vcpu_crypto_setup with the vCPUs out of SIE; priv.c reads it once")
                          for c in range(cfg.vcpus)] for v in self.vms]
        # a vCPU fd the scenario closes: released (kvm_vcpu_release) once no ioctl on it is in flight, then
        # fdget fails: KVM_RUN on it returns -EBADF without reaching the struct kvm
        self.vcpu_fd_closed = {(v, c): self._var(bool_field(f"kvm{v}.vcpu{c}.fd_closed"),
                                                 unsynchronized="the fd table: close() against fdget()")
                               for v, c in sorted(cfg.closed_vcpu_fds) if v in self.vms and c < cfg.vcpus}
        # a VM fd the scenario closes and runs VM ioctls on: a VM ioctl holds the struct file from its fdget to
        # its return (VM_FD "ioctl"), the close releases it (kvm_vm_release) only when none does, then fdget
        # fails: a later VM ioctl returns -EBADF without reaching the struct kvm
        self.vm_fd = {v: self._var(enum_field(f"kvm{v}.vm_fd", VM_FD, "open"),
                                   unsynchronized="the fd table and the file's reference: close() against fdget()")
                      for v in sorted(cfg.closed_vm_fds) if v in self.vms}
        # an mdev the scenario removes and writes attributes of: a write holds kernfs's active reference
        # (lockdep's kn->active) from kernfs_get_active to its return, the remove drains them first, and later
        # writes fail -ENODEV (ap_model/kernel/kernfs.py)
        self.KN = {m: pb.rwsem(f"mdev{m} attributes: kn->active", cls="kn->active")
                   for m in sorted(cfg.sysfs_removed) if m in self.mdevs}
        self.sysfs_gone = {m: self._var(bool_field(f"mdev{m}.attributes_removed"),
                                    unsynchronized="kn->active: the drain's deactivation against kernfs_get_active's "
                                    "atomic_inc_unless_negative") for m in self.KN}
        # vfio_ap module loaded: matrix device, AP queue driver and mdev parent registered (vfio_ap_init)
        self.loaded = self._var(bool_field("vfio_ap.loaded", cfg.module_loaded))
        self.hook_unsafe = self._var(bool_field("ghost.hook_unsafe"))
        self.in_pqap: dict[str, tuple[int, Field]] = {}  # vcpu thread -> (vm, flag)
        self.errno: dict[str, Field] = {}
        self._locals: dict[tuple[str, str], Field] = {}
        self._labels: dict[str, int] = {}
        self.pending_end: dict[str, str] = {}
        self.ops_used: set[str] = set()
        self.scenario_ops: set[str] = set()  # operations the spec's threads run
        # the AP bus scan's serialisation, the bus's copy of QCI and the machine's AP configuration, declared
        # before the first thread where a thread changes the configuration (``ap_scan``, KernelDesign.build): a
        # scenario without such a change keeps its state vector (its machine configuration is the spec's)
        self.SB: Lock | None = None
        self.qci_apm: Field | None = None
        self.hw_apm: Field | None = None
        # era-specific state: pending host-configuration additions (matrix_mdev->apm_add, since the
        # guests_lock series), the vfio core's own kvm reference (6.2+), v17's global hook registry
        if era.dynamic and era.guests_lock:
            self.pending = [self._var(bool_field(f"mdev{m}.apm_add_pending"), [self.G]) for m in self.mdevs]
        if era.vfio_kvm_ref:
            self.vkvm = [self._var(ref_field(f"mdev{m}.vfio_device.kvm", kslots, cfg.attached.get(m, -1)),
                                   [self.VG[m]] if self.VG else []) for m in self.mdevs]
        if era.hook == "global":
            loaded = cfg.module_loaded
            self.hook_reg = self._var(enum_field("kvm_s390.pqap_hook", HOOK_OWNERS, "vfio_ap" if loaded else "NULL"),
                                      [self.GHL])
            self.registrations = self._var(int_field("ghost.pqap_hook_registrations", 0, 3, int(loaded)))

    # ------------------------------------------------------------ declarations
    def _var(self, f: Field, locks: Sequence[Any] = (), unsynchronized: str = "") -> Field:
        if f.kind == "mask":  # bit i of an APM is adapter cfg.adapters[i], of an AQM domain cfg.domains[i]
            f.meta[MASK_LABELS] = tuple(str(x) for x in (self.cfg.adapters if f.name.endswith("apm")
                                                          else self.cfg.domains))
            f.meta[MASK_ELEMENTS] = self.elements("adapter" if f.name.endswith("apm") else "domain")
        self.pb.var(f, protected_by=[lk for lk in locks if lk is not None], unsynchronized=unsynchronized)
        return f

    def elements(self, kind: str) -> tuple[str, ...]:
        """What the bits of an adapter or domain mask are (symmetry reduction may permute them)."""
        return tuple(f"{kind} {x}" for x in (self.cfg.adapters if kind == "adapter" else self.cfg.domains))

    def _thread_local(self, thread: str, f: Field) -> Field:
        """A C local or per-thread ghost of ``thread`` (each copy of the thread has its own: parametric proofs)."""
        f.meta[THREAD_LOCAL] = thread
        return self._var(f)

    def _initially_in_guest(self, m: int, i: int, j: int) -> bool:
        if m not in self.cfg.attached:
            return False
        if self.era.dynamic:
            sa, sq = self._initial_shadow(m)
        else:
            a_idx, d_idx = self.cfg.matrix.get(m, ([], []))
            sa, sq = _bits(a_idx), _bits(d_idx)
        return bool(sa >> i & 1 and sq >> j & 1)

    def _initial_shadow(self, m: int) -> tuple[int, int]:
        """vfio_ap_mdev_filter_matrix on the initial configuration (plain ints)."""
        a_idx, d_idx = self.cfg.matrix.get(m, ([], []))
        sq = _bits(d for d in d_idx if d in self.cfg.config_aqm)
        sa = 0
        for i in a_idx:
            if i not in self.cfg.config_apm:
                continue
            ok = all(self._initially_bound(i, j) for j in range(self.nD) if sq >> j & 1)
            sa |= int(ok) << i
        return sa, sq

    def _initially_bound(self, i: int, j: int) -> bool:
        c = self.cfg
        return i in c.config_apm and j in c.config_aqm and not (i in c.apmask and j in c.aqmask)

    def _initial_crycb(self, m: int) -> tuple[int, int]:
        if self.era.dynamic:
            return self._initial_shadow(m)
        a_idx, d_idx = self.cfg.matrix.get(m, ([], []))
        return _bits(a_idx), _bits(d_idx)

    def local(self, t: ThreadBuilder, name: str, slots: Sequence[str]) -> Field:
        """A thread-local variable (C local), e.g. the ``kvm`` of unset_kvm."""
        key = (t.name, name)
        if key not in self._locals:
            self._locals[key] = self._thread_local(t.name, ref_field(f"{t.name}.{name}", list(slots)))
        return self._locals[key]

    def in_pqap_flag(self, t: ThreadBuilder, v: int) -> Field:
        if t.name not in self.in_pqap:
            self.in_pqap[t.name] = (v, self._thread_local(t.name, bool_field(f"ghost.{t.name}.in_handle_pqap")))
        return self.in_pqap[t.name][1]

    def ap_scan(self, lock_name: str) -> tuple[Lock, Field]:
        """What serialises AP bus scans (``lock_name``: the work item ``ap_scan_work`` up to v6.8,
        ``ap_scan_bus_mutex`` since v6.9) and the bus's view of the host configuration it compares QCI with
        (``ap_qci_info.apm``, written only by a scan, under that lock; at start, the spec's ``config_apm``).

        With them the machine's configuration (``ghost.hw_config.apm``: the adapters a ZAPQ reaches), written
        in the scan's fetch of QCI, where the model makes the change visible: it equals the bus's copy in every
        state (lemma-cfg-add-configured), so it adds no state, and as a ghost it is no kernel memory to race on."""
        if self.SB is None or self.qci_apm is None:
            self.SB = self.pb.mutex(lock_name)
            self.qci_apm = self._var(mask_field("ap_qci_info.apm", self.nA, _bits(self.cfg.config_apm)), [self.SB])
            self.hw_apm = self._var(mask_field("ghost.hw_config.apm", self.nA, _bits(self.cfg.config_apm)))
        return self.SB, self.qci_apm

    def ret(self, t: ThreadBuilder) -> Field | None:
        if not self.cfg.track_errno:
            return None
        if t.name not in self.errno:
            self.errno[t.name] = self._thread_local(t.name, enum_field(f"{t.name}.ret", ERRNO))
        return self.errno[t.name]

    def set_ret(self, b: Body, t: ThreadBuilder, value: IntOrExpr | str) -> None:
        f = self.ret(t)
        if f is not None:
            b.set(f, E[value] if isinstance(value, str) else value)

    def errno_expr(self, *cases: tuple[Expr, str], default: str = "0") -> Expr:
        out: Expr = lift(E[default], INT)
        for cond, name in reversed(cases):
            out = If(cond, E[name], out)
        return out

    def apqn(self, i: int, j: int) -> str:
        return rules.apqn_str(self.cfg.adapters[i], self.cfg.domains[j])

    def label(self, t: ThreadBuilder, base: str) -> str:
        n = self._labels.get(t.name, 0)
        self._labels[t.name] = n + 1
        return f"{base}.{n}"

    # ---------------------------------------------------------- thread glue
    def begin_op(self, t: ThreadBuilder) -> None:
        lab = self.pending_end.pop(t.name, None)
        if lab is not None:
            t.label(lab)

    def entry_label(self, t: ThreadBuilder, base: str) -> str:
        """Label the next step (the op's first step may already carry the previous op's return label)."""
        pending = getattr(t, "_pending_label", None)
        if pending is not None:
            return str(pending)
        lab = self.label(t, base)
        t.label(lab)
        return lab

    def end_label(self, t: ThreadBuilder) -> str:
        """A label for "return from this operation" (names the next step emitted)."""
        if t.name not in self.pending_end:
            self.pending_end[t.name] = self.label(t, "return")
        return self.pending_end[t.name]

    def end_thread(self, t: ThreadBuilder) -> None:
        lab = self.pending_end.pop(t.name, None)
        if lab is not None:
            t.label(lab)
            with t.op("return to user space"):
                t.step("syscall_exit", "return to user space")

    # ---------------------------------------------------------- steps
    def step(self, t: ThreadBuilder, function: str, text: str, body: Body | None = None,
             guard: Expr | None = None, jumps: Sequence[tuple[Expr, str]] = (), goto: str | None = None,
             release: Sequence[tuple[Any, ...]] = (),
             acquire: Sequence[tuple[Any, Expr | None, IntOrExpr | None, str]] = (),
             waits: Sequence[Wait] = (), branches: Sequence[tuple[Expr | None, str]] = ()) -> int:
        """One atomic step: ``body`` plus lock releases/acquisitions; ``branches``: what a trace shows of it.

        ``release``/``acquire`` items are (lock or list of lock instances, condition, index[, mode]);
        a list with an index names the instance chosen by state (``kvm->lock`` of ``mdev->kvm``).
        """
        rel = [Use(it[0], it[1], it[2], it[3] if len(it) > 3 else "w") for it in release]
        acq = [Use(lk, cond, idx, mode) for lk, cond, idx, mode in acquire]
        return emit(t, function, text, body, guard, jumps, goto, rel, acq, waits, branches)

    def lock(self, t: ThreadBuilder, lk: Any, function: str, when: Expr | None = None,
             index: IntOrExpr | None = None, mode: str = "w", body: Body | None = None,
             kvm_index: IntOrExpr | None = None, jumps: Sequence[tuple[Expr, str]] = (), text: str = "",
             branches: Sequence[tuple[Expr | None, str]] = (), skip: str = "") -> int:
        """mutex_lock / down_read / down_write of ``lk`` (or ``lk[index]``), only ``when`` it holds.

        ``kvm_index``: the lock lives in that struct kvm (UAF check); ``text``: the step's C text;
        ``branches``: what a trace shows of it (see ``step``), ``{lock}`` standing for the lock call;
        without them, a conditional lock shows the call when taken and ``skip`` (why not) otherwise."""
        b = body or Body()
        if kvm_index is not None:
            self.use_kvm(b, kvm_index, "kvm->lock" if not isinstance(lk, RwSem) else "pqap_hook_rwsem", when)
        name = family_name(lk, index)
        verb = "mutex_lock" if not is_rw(lk) else ("down_read" if mode == "r" else "down_write")
        call = f"{verb}({name})"
        if not branches and when is not None:
            branches = [(when, "{lock}"), (Not(when), skip or f"{name} not taken")]
        return self.step(t, function, text or call, body=b, acquire=[(lk, when, index, mode)], jumps=jumps,
                         branches=[(c, seg.replace("{lock}", text or call)) for c, seg in branches])

    def unlock(self, t: ThreadBuilder, function: str, *items: tuple[Any, ...],
               body: Body | None = None, text: str = "", jumps: Sequence[tuple[Expr, str]] = (),
               goto: str | None = None, branches: Sequence[tuple[Expr | None, str]] = ()) -> int:
        names = ", ".join(family_name(it[0], it[2]) for it in items)
        return self.step(t, function, text or f"unlock({names})", body=body, release=items, jumps=jumps, goto=goto,
                         branches=branches)

    def trylock(self, t: ThreadBuilder, lk: Lock, function: str, fail: str) -> int:
        """mutex_trylock; on failure continue at ``fail`` (the caller returns -EAGAIN/-EBUSY)."""
        return t.trylock(lk, function, fail)

    def wait_flag(self, t: ThreadBuilder, function: str, idx: IntOrExpr, when: Expr | None = None) -> int:
        """wait_event(matrix_dev->wait_for_kvm, !matrix_mdev->kvm_busy) for the mdev ``idx``."""
        return wait_clear(t, function, [fl.holder for fl in self.BUSY], [fl.name for fl in self.BUSY], idx, when,
                          "wait_event(!matrix_mdev->kvm_busy)")

    def busy_set(self, b: Body, t: ThreadBuilder, m: IntOrExpr, on: bool, when: Expr | None = None) -> None:
        self.busy_set_fields(b, m, t.index + 1 if on else 0, when)

    def busy_set_fields(self, b: Body, m: IntOrExpr, value: int, when: Expr | None = None) -> None:
        b.set_at([fl.holder for fl in self.BUSY], m, value, when)

    def busy(self, m: IntOrExpr) -> Expr:
        """matrix_mdev->kvm_busy of mdev ``m`` (false in an era without the flag)."""
        if not self.BUSY:
            return Const(False, BOOL)
        return Select([fl.holder.var for fl in self.BUSY], m, 0) != 0

    def close_device_entry(self, t: ThreadBuilder, m: int, vfio_fn: str,
                           jumps: Sequence[tuple[Expr, str]]) -> Expr:
        """vfio core takes its group/dev_set lock and, for the last fd (open_count 1), calls close_device;
        vfio_ap_mdev_unset_kvm reads matrix_mdev->kvm into a local. Returns that local (the kvm being
        detached). ``jumps`` send the other cases (not the last fd, no fd) elsewhere."""
        self.lock(t, self.VG, vfio_fn, index=m)
        lk = self.local(t, "kvm", self.kslots)
        last = self.vopen[m].var == 1
        b = Body()
        b.set(lk, self.mkvm[m].var)
        b.set(self.closing[m], True, when=last)
        text = "vfio_ap_mdev_unset_kvm: kvm = matrix_mdev->kvm"
        self.step(t, "vfio_ap_mdev_close_device", text, body=b, jumps=jumps,
                  branches=[(last, text), (self.vopen[m].var > 1, "open_count > 1: not the last fd, no close_device"),
                            (self.vopen[m].var == 0, "no fd open: nothing to close")])
        return lk.var

    def notifier_open(self, t: ThreadBuilder, m: int, vm: int, function: str) -> str:
        """Group-notifier era (<= v5.19) open: vfio_register_notifier(VFIO_GROUP_NOTIFY) replays
        SET_KVM only if group->kvm is set; kvm_vfio_release cleared it before the VM went away, so
        with the VM gone the open succeeds with no KVM (issue 8 #1). Emits the check and the no-KVM
        tail (returns 0, unlocks the group); returns the label where the SET_KVM path continues."""
        go, no_kvm = self.label(t, "set_kvm"), self.label(t, "open_no_kvm")
        has_kvm = self.kvm_alive(vm)
        self.step(t, function, "vfio_register_notifier(SET_KVM): replayed if group->kvm",
                  jumps=[(has_kvm, go)], goto=no_kvm,
                  branches=[(has_kvm, "vfio_register_notifier(SET_KVM): group->kvm set, SET_KVM replayed"),
                            (Not(has_kvm), "vfio_register_notifier(SET_KVM): group->kvm == NULL, no replay")])
        t.label(no_kvm)
        b = Body()
        self.set_ret(b, t, 0)
        self.unlock(t, function, (self.VG, None, m), body=b, text="group->kvm == NULL: no SET_KVM; "
                    "open returns 0; mutex_unlock(group_lock)", goto=self.end_label(t))
        t.label(go)
        return go

    # ---------------------------------------------------------- properties
    def add_properties(self) -> None:
        """The named properties of the vfio_ap model (ap_model/properties.py).

        The ``lemma-*`` invariants of the final design (properties.add_lemmas)
        name program points (a thread's pc), which exist only once the program
        is built: they are derived from the built program."""
        from .properties import add_lemmas, add_properties, has_lemmas

        add_properties(self)
        if has_lemmas(self):
            self.pb.derive(lambda program: add_lemmas(self, program))


def _bits(idx: Any) -> int:
    v = 0
    for i in idx:
        v |= 1 << i
    return v


__all__ = ["World", "Era", "Cfg", "Body", "parse_cfg", "eq", "true", "VFIO", "ZCRYPT", "NODRV", "CLEAN", "HOST",
           "E", "ERRNO", "HOOK_OWNERS", "VM_FD", "VM_IOCTLS", "int_field"]
