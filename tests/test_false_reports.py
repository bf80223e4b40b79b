"""Regression tests for the false or wrong reports of issue 8 (each failed on the tree before its fix).

Each scenario is a spec the way a user writes it; the assertions name the verdict the kernel behaviour
implies, and where useful the exact outcome (errno, trace shape)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.report.results import CheckResult
from checker.search.progmodel import ProgramModel
from checker.search.run import check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec


def run(tmp_path: Path, text: str) -> tuple[CheckResult, object]:
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    loaded = load_spec(str(p), default_registry())
    program = loaded.design.build(loaded.scenario)
    return check_program(program, Options(quiet=True)), program


def status(result: CheckResult) -> dict[str, str]:
    return {p.name: p.status for p in result.properties}


def only_run(program: object) -> int:
    """The final state of a one-thread scenario (exactly one successor at every step)."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    s = model.init_states()[0]
    while not model.is_done(s):
        out = model.successors(s)
        assert len(out) == 1, out
        assert out[0][1] >= 0, model.violation(-1 - out[0][1])
        s = out[0][1]
    return s


def executed(program: object) -> list[tuple[str, str]]:
    """(function, text) of every step of a one-thread scenario's only run."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    s, out = model.init_states()[0], []
    while not model.is_done(s):
        (aid, s), = model.successors(s)
        act = program.actions[aid]  # type: ignore[attr-defined]
        out.append((act.function, act.text))
    return out


def explore(program: object) -> dict[int, list[tuple[int, int]]]:
    """Every reachable state of the unreduced program with its successors (action, state; a negative
    state is a violation)."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    graph: dict[int, list[tuple[int, int]]] = {}
    todo = list(model.init_states())
    while todo:
        s = todo.pop()
        if s not in graph:
            graph[s] = model.successors(s)
            todo += [n for _, n in graph[s] if n >= 0]
    return graph


def field(program: object, name: str, state: int) -> int:
    f = program.layout[name]  # type: ignore[attr-defined]
    return int(f.get(state))


def test_1_open_after_vm_gone_fails_einval(tmp_path: Path) -> None:
    """kvm_get_kvm_safe takes no reference once the count hit zero; kvm_vfio_release already cleared
    group->kvm, so vfio_device_open_file fails -EINVAL. No use after free."""
    res, program = run(tmp_path, """
name: open-after-vm-gone
design: final
constants: {vms: 1, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"]}
threads:
  - name: qemu
    run: [{open_device: {mdev: 0}}, {close_vcpu_fd: {vm: 0}}, {close_vm_fd: {vm: 0}},
          {close_device: {mdev: 0}}, {open_device: {mdev: 1, vm: 0}}]
""")
    assert status(res)["memory-safety"] == "HOLDS"
    end = only_run(program)
    from ap_model.world import E

    assert field(program, "qemu.ret", end) == E["EINVAL"]
    assert field(program, "mdev1.kvm", end) == -1


TWO_VMS = """
name: two-vms
design: {design}
constants: {{vms: 2, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"]}}
threads:
  - name: qemu0
    run: [{{open_device: {{mdev: 0, vm: 0}}}}, {{close_device: {{mdev: 0}}}}]
  - name: qemu1
    run: [{{open_device: {{mdev: 1, vm: 1}}}}, {{close_device: {{mdev: 1}}}}]
"""


def test_2_write_through_state_chosen_index_is_no_read(tmp_path: Path) -> None:
    """unset_kvm writes kvm->arch.crypto.pqap_hook of ITS kvm; that is no access to the other VM's."""
    for design in ("final", "v16-hook"):
        res, _ = run(tmp_path, TWO_VMS.format(design=design))
        assert status(res)["data-race"] == "HOLDS", (design, [p.detail for p in res.properties])


def test_2_footprint_of_an_indexed_write() -> None:
    from checker.lang.layout import int_field
    from checker.lang.program import ProgramBuilder

    pb = ProgramBuilder("idx")
    lk = pb.mutex("L")
    cells = [int_field(f"cell{k}", 0, 3) for k in range(3)]
    for c in cells:
        pb.var(c, protected_by=[lk])
    idx = int_field("idx", 0, 2, 1)
    pb.var(idx)
    t = pb.thread("t")
    upd = pb._slot_update(cells, idx.var, 2)
    t.step("f", "cell[idx] = 2", updates=upd)
    prog = pb.build()
    reads, writes = prog.actions[0].footprint()
    assert reads == frozenset({idx})  # the index is read, the other cells are not
    assert writes - {prog.threads[0].pc} == frozenset(cells)


LAST_PUT = """
name: last-put
design: {design}
constants: {{vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"]}}
threads:
  - name: qemu
    run: [{{open_device: {{mdev: 0}}}}, {{close_vcpu_fd: {{vm: 0}}}}, {{close_vm_fd: {{vm: 0}}}},
          {{close_device: {{mdev: 0}}}}]
"""


def test_6_last_put_under_kvm_lock_self_deadlocks(tmp_path: Path) -> None:
    """v5.15 unset_kvm puts the kvm with kvm->lock held; if that is the last reference, kvm_destroy_vm
    takes kvm->lock again: the thread never returns (before, a use after free at the unlock)."""
    res, _ = run(tmp_path, LAST_PUT.format(design="v16-hook"))
    st = status(res)
    assert st["memory-safety"] == "HOLDS"
    assert st["deadlock"] == "VIOLATED"
    dl = next(p for p in res.properties if p.name == "deadlock")
    assert "qemu waits for kvm0->lock (in kvm_destroy_vm) held by qemu (itself: recursive locking)" in dl.trace.waits  # type: ignore[union-attr]
    # 6.2+: the vfio core holds its own reference until after close_device: never the last put there
    res, _ = run(tmp_path, LAST_PUT.format(design="final"))
    assert status(res)["deadlock"] == "HOLDS"


def test_3_reprobe_and_probe_read_ap_perms_under_its_mutex(tmp_path: Path) -> None:
    """__ap_revise_reserved and ap_device_probe test ap_perms.apm/aqm under ap_perms_mutex (ap_bus.c)."""
    res, _ = run(tmp_path, """
name: perms
design: final
constants: {vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], config_apm: [3]}
threads:
  - name: admin
    run: [{apmask_store: {reserve: [4]}}]
  - name: admin2
    run: [{apmask_store: {release: [3]}}]
  - name: bus
    run: [{adapter_online: {apid: 4}}]
""")
    # ap_perms is declared protected_by ap_perms_mutex: an access without it is a lock-discipline report
    assert status(res)["lock-discipline"] == "HOLDS", [p.detail for p in res.properties]
    race = next(p for p in res.properties if p.name == "data-race")
    # the race that remains is dev->driver, read by __ap_revise_reserved without device_lock (ap_bus.c)
    assert "ap_perms" not in race.detail and race.detail.startswith("admin (__ap_revise_reserved) reads ap_queue["), \
        race.detail


def test_4_v15_v16_close_while_kvm_busy_unlocks_once(tmp_path: Path) -> None:
    """vfio_ap_mdev_release finding kvm_busy set drops matrix_dev->lock once, in wait_event."""
    for design in ("v15", "v16"):
        res, _ = run(tmp_path, f"""
name: close-busy
design: {design}
constants: {{vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: admin
    run: [{{assign_adapter: {{mdev: 0, apid: 4}}}}]
  - name: qemu
    run: [{{close_device: {{mdev: 0}}}}]
""")
        lo = next(p for p in res.properties if p.name == "lock-order")
        assert lo.status == "HOLDS", (design, lo.detail)


def test_5_unlocked_hook_fails_as_null_dereference_in_priv_c(tmp_path: Path) -> None:
    """v15/v16 (unlocked per-mdev hook): priv.c re-reads kvm->arch.crypto.pqap_hook for ->owner, ->hook
    and module_put; vfio_ap re-reads it under matrix_dev->lock with a NULL check. The failure of the
    interleaving is a NULL dereference in priv.c, not a use after free in vfio_ap."""
    for spec in ("v15-hooks.yaml", "v16-hooks.yaml"):
        loaded = load_spec(str(Path(__file__).parent.parent / "specs" / spec), default_registry())
        res = check_program(loaded.design.build(loaded.scenario), Options(quiet=True))
        ms = next(p for p in res.properties if p.name == "memory-safety")
        assert ms.status == "VIOLATED"
        assert ms.detail.startswith(
            "NULL dereference of struct ap_matrix_mdev pointer: kvm->arch.crypto.pqap_hook->"), ms.detail
        last = ms.trace.steps[-1]  # type: ignore[union-attr]
        assert last.function == "handle_pqap" and "priv.c" in last.action, last


STANDBY_UNATTACHED = """
name: standby
design: {design}
constants: {{vms: 1, mdevs: 2, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5", "mdev1: 4 x 5"],
             attached: ["mdev0 -> kvm0"]}}
threads:
  - name: bus
    run: [{{adapter_standby: {{apid: 4}}}}]
"""


def test_7_final_is_one_release(tmp_path: Path) -> None:
    """final = 6.8: vfio_ap_mdev_cfg_remove locks matrix_mdev->kvm->lock with no NULL check (fixed only by
    "Fix dereference matrix_mdev->kvm without checking for NULL", 2026), next to the -EPERM stale hook
    (final-hooks); mainline has the NULL check."""
    res, _ = run(tmp_path, STANDBY_UNATTACHED.format(design="final"))
    ms = next(p for p in res.properties if p.name == "memory-safety")
    assert ms.status == "VIOLATED"
    assert ms.detail == "NULL dereference of struct kvm pointer: matrix_mdev->kvm->lock", ms.detail
    res, _ = run(tmp_path, STANDBY_UNATTACHED.format(design="mainline"))
    assert status(res)["memory-safety"] == "HOLDS"


def test_8_scan_complete_skips_mdevs_with_nothing_pending(tmp_path: Path) -> None:
    """vfio_ap_on_scan_complete only visits mdevs with a pending apm_add/aqm_add/adm_add: an mdev without the
    new adapter is not locked (and an unattached one is not dereferenced)."""
    res, program = run(tmp_path, """
name: online
design: mainline
constants: {vms: 1, mdevs: 2, adapters: [3, 4], domains: [5], config_apm: [3], matrix: ["mdev0: 3 x 5"],
            attached: ["mdev0 -> kvm0"]}
threads:
  - name: bus
    run: [{adapter_online: {apid: 4}}]
""")
    assert status(res)["memory-safety"] == "HOLDS"
    scan = [text for fn, text in executed(program) if fn == "vfio_ap_on_scan_complete"]
    # guests_lock taken and released; no mdev has adapter 4 pending: each is skipped, none is locked
    assert len(scan) == 4 and scan[0] == "mutex_lock(matrix_dev->guests_lock)", scan
    assert scan[1].startswith("mdev0: nothing added to it: continue;") and scan[2].startswith("mdev1: nothing"), scan
    assert scan[3] == "unlock(matrix_dev->guests_lock)"


def test_8_v15_unassign_trylocks(tmp_path: Path) -> None:
    """v15's unassign_*_store take matrix_dev->lock with mutex_trylock (-EAGAIN when busy), like assign; v16's
    unassign takes it with mutex_lock."""
    for design, verb in (("v15", "mutex_trylock"), ("v16", "mutex_lock")):
        _, program = run(tmp_path, f"""
name: unassign
design: {design}
constants: {{vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"]}}
threads:
  - name: admin
    run: [{{unassign_adapter: {{mdev: 0, apid: 3}}}}]
""")
        first = next(a for a in program.actions if a.function == "unassign_adapter_store")  # type: ignore[attr-defined]
        assert first.text == f"{verb}(matrix_dev->lock)", (design, first.text)


def test_8_perms_mutex_in_assign(tmp_path: Path) -> None:
    """v15/v16 assign take ap_perms_mutex inside validation (matrix_dev->lock -> ap_perms_mutex); v17's
    assign takes none; 6.x assign takes it first (ap_perms_mutex -> guests_lock)."""
    spec = """
name: assign
design: {design}
constants: {{vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5"]}}
threads:
  - name: admin
    run: [{{assign_adapter: {{mdev: 0, apid: 4}}}}]
"""
    for design in ("v15", "v16", "v17", "final"):
        _, program = run(tmp_path, spec.format(design=design))
        perms = [(a.function, a.text) for a in program.actions  # type: ignore[attr-defined]
                 if any(q.lock.name == "ap_perms_mutex" for q in a.acquires)]
        if design in ("v15", "v16"):
            assert perms == [("ap_apqn_in_matrix_owned_by_def_drv", "mutex_lock(ap_perms_mutex)")], perms
        elif design == "v17":
            assert perms == [], perms
        else:
            assert perms == [("assign_adapter_store", "mutex_lock(ap_perms_mutex)")], perms


def test_8_v17_module_exit_removes_mdevs(tmp_path: Path) -> None:
    """v17 vfio_ap_exit: vfio_ap_mdev_unregister removes every mdev (after the last close); an open after
    the unload finds no device (ENODEV), not a freed mdev."""
    res, program = run(tmp_path, """
name: exit
design: v17
constants: {vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"]}
threads:
  - name: admin
    run: [{vfio_ap_exit: {}}, {open_device: {mdev: 0}}]
""")
    assert status(res)["memory-safety"] == "HOLDS"
    end = only_run(program)
    from ap_model.world import E

    assert field(program, "mdev0.state", end) == 2  # freed by the module exit
    assert field(program, "admin.ret", end) == E["ENODEV"]


def test_8_use_message_names_the_access_once() -> None:
    """A use-after-free message names the access once (it printed "X (X)")."""
    loaded = load_spec(str(Path(__file__).parent.parent / "specs" / "final-hooks.yaml"), default_registry())
    res = check_program(loaded.design.build(loaded.scenario), Options(quiet=True, reduction="none"))
    ms = next(p for p in res.properties if p.name == "memory-safety")
    assert ms.detail == ("use after free of struct ap_matrix_mdev mdev1: matrix_mdev = container_of(pqap_hook), "
                         "freed by vfio_ap_mdev_remove (qemu1, step 26)"), ms.detail
    assert ms.detail.count("container_of(pqap_hook)") == 1


CDOM = """
name: cdom
design: "{design}"
constants: {{vms: 1, mdevs: 1, domains: [5, 6], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: admin
    run: [{{assign_control_domain: {{mdev: 0, apqi: 6}}}}]
"""


def test_control_domains_reach_the_guest(tmp_path: Path) -> None:
    """Control domains (adm): 6.x hot plugs an assigned control domain into the running guest's CRYCB (no
    reservation or sharing check); pre-dynamic 5.15 refuses while a guest is attached (-EBUSY)."""
    from ap_model.world import E

    res, program = run(tmp_path, CDOM.format(design="6.8"))
    assert res.result == "HOLDS", [p.detail for p in res.properties]
    end = only_run(program)
    assert field(program, "mdev0.matrix.adm", end) == 0b10  # domain 6 = bit 1
    assert field(program, "mdev0.shadow_apcb.adm", end) == 0b10
    assert field(program, "kvm0.crycb.adm", end) == 0b10
    assert field(program, "admin.ret", end) == 0
    _, program = run(tmp_path, CDOM.format(design="5.15"))
    end = only_run(program)
    assert field(program, "mdev0.matrix.adm", end) == 0
    assert field(program, "admin.ret", end) == E["EBUSY"]


OPEN_VS_REMOVE = """\
name: open-vs-remove
design: "{design}"
constants: {{vms: 1, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: qemu1
    run: [{{open_device: {{mdev: 1, vm: 0}}}}]
  - name: remover
    run: [{{mdev_remove: {{mdev: 1}}}}]
  - name: vcpu0
    run: [{{kvm_run: {{vm: 0}}}}]
"""


@pytest.mark.parametrize("design", ["mainline", "final", "6.2", "v18", "5.15", "v16-hook"])
def test_9_mdev_remove_waits_for_an_open_in_progress(design: str, tmp_path: Path) -> None:
    """vfio_unregister_group_dev waits for every registration reference, and an open holds one from
    vfio_device_get_from_name to its end; once the wait is over no new fd gets one (-ENODEV). Before the
    fix the remove passed its wait while an open of the same mdev held group_lock, freed the mdev under
    it, and mainline reported hook-safe and memory-safety VIOLATED (13 steps) for a bug it does not have.
    The designs with kernel-facts §5 C1 (a failed open leaves the hook) still report it, by that path. In
    the group-notifier designs (v18, 5.15) the -EPERM does not fail the open: QEMU closes that fd, else
    the remove waits for ever (tests/test_false_reports_eras.py)."""
    spec = OPEN_VS_REMOVE
    if design in ("v18", "5.15", "v16-hook"):
        spec = spec.replace("{{open_device: {{mdev: 1, vm: 0}}}}]",
                            "{{open_device: {{mdev: 1, vm: 0}}}}, {{close_device: {{mdev: 1}}}}]")
    result, program = run(tmp_path, spec.format(design=design))
    got = status(result)
    if design == "mainline":
        assert (got["hook-safe"], got["memory-safety"]) == ("HOLDS", "HOLDS")
        return
    assert got["hook-safe"] == "VIOLATED"
    trace = next(p.trace for p in result.properties if p.name == "hook-safe")
    assert trace is not None
    steps = [(s.thread, s.function) for s in trace.steps]
    passed = steps.index(("remover", "vfio_unregister_group_dev"))
    opened = max(i for i, (t, _) in enumerate(steps) if t == "qemu1")
    assert opened < passed  # the open finished (-EPERM, hook left behind; its fd closed) before the remove went on


@pytest.mark.parametrize("design", ["5.10", "5.11", "5.12", "5.15-pre", "v15", "v16"])
def test_10_before_5_15_remove_waits_for_the_vfio_device_reference(design: str, tmp_path: Path) -> None:
    """<= v5.14 (and the v15/v16 postings): vfio_group_get_device_fd -> vfio_device_get_from_name takes a
    reference on the vfio_device before calling the driver's open, the fd keeps it, and mdev remove's
    vfio_del_group_dev waits until the last one is put; a lookup after that finds no device (-ENODEV).
    Before the fix the remove freed mdev1 while its open was in progress and every one of these designs
    reported a use after free of "matrix_mdev (open)" in 6 steps. What remains is the real finding of the
    unlocked per-mdev hook (priv.c reads it without matrix_dev->lock: 1e753732bda6); 5.15-pre has the rwsem.
    QEMU closes the fd: set_kvm's -EPERM does not fail the open there (test_13), the remove waits for it."""
    spec = OPEN_VS_REMOVE.replace("{{open_device: {{mdev: 1, vm: 0}}}}]",
                                  "{{open_device: {{mdev: 1, vm: 0}}}}, {{close_device: {{mdev: 1}}}}]")
    result, _ = run(tmp_path, spec.format(design=design))
    got = status(result)
    assert (got["memory-safety"], got["hook-safe"], got["data-race"], got["deadlock"]) == ("HOLDS",) * 4, got
    if design == "5.15-pre":
        assert got["lock-discipline"] == "HOLDS"
    else:
        ld = next(p for p in result.properties if p.name == "lock-discipline")
        assert ld.status == "VIOLATED"
        assert ld.detail.startswith("vcpu0 (handle_pqap) reads kvm0->arch.crypto.pqap_hook without "
                                    "matrix_dev->lock"), ld.detail
    # the remove first: the open finds no device
    _, program = run(tmp_path, f"""
name: open-after-remove
design: "{design}"
constants: {{vms: 1, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: qemu
    run: [{{mdev_remove: {{mdev: 1}}}}, {{open_device: {{mdev: 1, vm: 0}}}}]
""")
    from ap_model.world import E

    end = only_run(program)
    assert field(program, "qemu.ret", end) == E["ENODEV"]
    assert field(program, "mdev1.vfio_device.refs", end) == 0
    steps = executed(program)
    assert steps[0] == ("vfio_del_group_dev", "wait until the vfio device is closed (request -> QEMU)"), steps


DOUBLE_OPEN = """
name: double-open
design: "{design}"
constants: {{vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"]}}
threads:
  - name: qemu
    run: [{ops}]
"""


@pytest.mark.parametrize("design,users,after", [
    # (kvm0.refs, mdev0.kvm, users) after open, open; then after close; then after the second close
    ("5.11", "refs", [(4, 0, 2), (3, -1, 1), (3, -1, 0)]),
    ("5.12", "refs", [(4, 0, 2), (3, -1, 1), (3, -1, 0)]),
    ("5.15", "open_count", [(3, 0, 2), (3, 0, 1), (2, -1, 0)]),
    ("final", "open_count", [(4, 0, 2), (4, 0, 1), (2, -1, 0)]),
])
def test_11_two_fds_of_one_mdev(design: str, users: str, after: list[tuple[int, int, int]],
                                tmp_path: Path) -> None:
    """5.15+: the vfio core calls open_device only on the first open and close_device only on the last
    close (device->open_count under dev_set->lock); the guest stays attached while one fd is open. Before
    5.15 every VFIO_GROUP_GET_DEVICE_FD calls vfio_ap_mdev_open: the second registration of the group
    notifier only WARNs ("double register detected") and the SET_KVM replay runs set_kvm again
    (kvm_get_kvm again); the first release detaches the guest and the second finds no kvm: one struct kvm
    reference is never put. (The model called set_kvm on every open in every era: a second kvm reference
    and a detach at the first close in 6.x.) kvm0.refs: VM fd + vCPU fd + vfio_ap's (+ the vfio core's)."""
    ops = ["{open_device: {mdev: 0}}"] * 2 + ["{close_device: {mdev: 0}}"] * 2
    for n, want in zip((2, 3, 4), after):
        _, program = run(tmp_path, DOUBLE_OPEN.format(design=design, ops=", ".join(ops[:n])))
        end = only_run(program)
        got = (field(program, "kvm0.refs", end), field(program, "mdev0.kvm", end),
               field(program, f"mdev0.vfio_device.{users}", end))
        assert got == want, (n, got)
        assert field(program, "qemu.ret", end) == 0
    if users == "open_count":  # the first of the two closes does not reach the driver
        texts = [text for fn, text in shown(program) if fn == "vfio_ap_mdev_close_device"]
        assert texts == ["open_count > 1: not the last fd, no close_device",
                         "vfio_ap_mdev_unset_kvm: kvm = matrix_mdev->kvm"], texts


def shown(program: object) -> list[tuple[str, str]]:
    """(function, the text a trace shows) of every step of a one-thread scenario's only run."""
    from checker.search.pycompile import evaluate

    model = ProgramModel(program)  # type: ignore[arg-type]
    s, out = model.init_states()[0], []
    while not model.is_done(s):
        values = {f: f.get(s) for f in program.layout.fields}  # type: ignore[attr-defined]
        (aid, s), = model.successors(s)
        act = program.actions[aid]  # type: ignore[attr-defined]
        out.append((act.function, act.shown_text(lambda c, v=values: bool(evaluate(c, v)))))
    return out


BYPASS = """
name: bypass
design: "{design}"
constants: {{vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: admin
    run: [{{assign_adapter: {{mdev: 0, apid: 3}}}}, {{unassign_adapter: {{mdev: 0, apid: 4}}}},
          {{assign_control_domain: {{mdev: 0, apqi: 5}}}}, {{assign_control_domain: {{mdev: 0, apqi: 5}}}}]
"""


@pytest.mark.parametrize("design", ["6.2", "final", "mainline", "v17", "v18"])
def test_12_stores_bypass_a_bit_already_so(design: str, tmp_path: Path) -> None:
    """v6.0+ "s390/vfio-ap: bypass unnecessary processing of AP resources": assign_adapter/domain/
    control_domain_store of a bit already set (unassign of a bit already clear) return count at once, under
    the locks: no validation, link, filter or guest update. The v17/v18 postings predate it."""
    _, program = run(tmp_path, BYPASS.format(design=design))
    locking = ("mutex_lock(", "down_")
    stores = [text for fn, text in shown(program) if fn.endswith("_store") and not text.startswith(locking)]
    assert len(stores) == 4, stores
    if design in ("v17", "v18"):
        assert not any("bypass" in text for text in stores), stores
        return
    assert stores == ["adapter already assigned: return count (bypass); unlock",
                      "adapter not assigned: return count (bypass); unlock",
                      "set adm bit; shadow adm = adm & host config; vfio_ap_mdev_update_guest_apcb; "
                      "release_update_locks_for_mdev",
                      "control domain already assigned: return count (bypass); release_update_locks_for_mdev"], stores


def test_12_bypass_leaves_a_pending_host_change_to_scan_complete(tmp_path: Path) -> None:
    """Where the bypass is visible in the state: adapter 4 (assigned to mdev0) comes online; between
    vfio_ap_on_cfg_changed and vfio_ap_on_scan_complete the admin writes adapter 3 (already assigned) to
    assign_adapter. v6.0+ returns at once; the store without the bypass re-filtered and plugged adapter 4
    into kvm0's CRYCB ahead of on_scan_complete: 84 states instead of 80 (no reduction)."""
    p = tmp_path / "spec.yaml"
    p.write_text("""
name: pending
design: final
constants: {vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], config_apm: [3], matrix: ["mdev0: 3,4 x 5"],
            attached: ["mdev0 -> kvm0"]}
threads:
  - name: bus
    run: [{adapter_online: {apid: 4}}]
  - name: admin
    run: [{assign_adapter: {mdev: 0, apid: 3}}]
""", encoding="utf-8")
    loaded = load_spec(str(p), default_registry())
    res = check_program(loaded.design.build(loaded.scenario), Options(quiet=True, reduction="none"))
    assert (res.result, res.stats.states) == ("HOLDS", 80)


@pytest.mark.parametrize("design,users", [("5.10", "refs"), ("5.12", "refs"), ("v15", "refs"),
                                          ("5.15", "open_count")])
def test_13_notifier_era_eperm_does_not_fail_the_open(design: str, users: str, tmp_path: Path) -> None:
    """<= v5.14 (and the v15/v16 postings): the group notifier's SET_KVM replay returns NOTIFY_DONE when
    vfio_ap_mdev_set_kvm finds another mdev with this kvm (-EPERM), and vfio_register_group_notifier
    ignores what the replay returns: the open succeeds, the fd holds the device, no KVM is attached, and
    the mdev's remove waits for that fd. (The model failed the open with -EPERM.) So do v5.15 - v5.18
    (the 5.15 design; v17, v18: tests/test_false_reports_eras.py); v5.19's open_device returns it."""
    _, program = run(tmp_path, f"""
name: second-mdev
design: "{design}"
constants: {{vms: 1, mdevs: 2, matrix: ["mdev0: 3 x 5", "mdev1: 4 x 6"], attached: ["mdev0 -> kvm0"]}}
threads:
  - name: qemu
    run: [{{open_device: {{mdev: 1, vm: 0}}}}]
""")
    end = only_run(program)
    assert field(program, "mdev1.kvm", end) == -1
    assert (field(program, "qemu.ret", end), field(program, f"mdev1.vfio_device.{users}", end)) == (0, 1)


VCPU_FD_CLOSE = """
name: vcpu-fd-closed-while-running
design: "{design}"
constants: {{vms: 1, mdevs: 1, domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - {{name: vcpu0, run: [{{kvm_run: {{vm: 0}}}}, {{kvm_run: {{vm: 0}}}}]}}
  - {{name: qemu, run: [{{close_vcpu_fd: {{vm: 0}}}}, {{close_vm_fd: {{vm: 0}}}}, {{close_device: {{mdev: 0}}}}]}}
"""


@pytest.mark.parametrize("design", ["mainline", "5.15", "v17", "5.12"])
def test_14_vcpu_fd_closed_while_kvm_run_is_in_flight(design: str, tmp_path: Path) -> None:
    """close(vcpu fd) in one QEMU thread while another runs KVM_RUN on it: the file is released at its last
    fput, after the ioctl returns, so the struct kvm outlives the run; a later KVM_RUN fails in fdget with
    -EBADF. (The model put the vCPU fd's kvm reference at once: with the VM fd and the mdev's references
    gone too, "use after free of struct kvm kvm0: vcpu->kvm", 12 steps on mainline and on 5.12; 5.15 and
    v17 did not reach it here and stay as controls.)"""
    res, _ = run(tmp_path, VCPU_FD_CLOSE.format(design=design))
    assert status(res)["memory-safety"] == "HOLDS"


def test_14_kvm_run_on_a_closed_vcpu_fd_is_ebadf(tmp_path: Path) -> None:
    from ap_model.world import E

    _, program = run(tmp_path, """
name: run-after-close
design: mainline
constants: {vms: 1, mdevs: 1, domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}
threads:
  - {name: vcpu0, run: [{close_vcpu_fd: {vm: 0}}, {kvm_run: {vm: 0}}]}
""")
    assert executed(program) == [("kvm_vcpu_release", "kvm_put_kvm (vCPU 0 fd)"),
                                 ("kvm_vcpu_ioctl", "mutex_lock(kvm0.vcpu0->mutex)"),  # fdget fails here
                                 ("syscall_exit", "return to user space")]
    end = only_run(program)
    assert field(program, "vcpu0.ret", end) == E["EBADF"]
    assert field(program, "kvm0.vcpu0.fd_closed", end) == 1
