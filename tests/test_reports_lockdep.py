"""lockdep's own report format and the hung-task view of a deadlock (issue 10, point 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from checker.report.lockdep import held_locks_by_thread, lockdep_name, render_cycle, unsafe_scenario
from checker.report.results import LockCycle, LockEdge, Trace, TraceStep

ROOT = Path(__file__).resolve().parent.parent

EDGES = [
    LockEdge("vcpu->mutex", "matrix_dev->lock", "w", "w", "vcpu0", "handle_pqap", "KVM_RUN", "kvm_vcpu_ioctl"),
    LockEdge("matrix_dev->lock", "kvm->lock", "w", "w", "admin", "kvm_arch_crypto_set_masks",
             "assign_adapter_store", "assign_adapter_store"),
    LockEdge("kvm->lock", "vcpu->mutex", "w", "w", "pv", "kvm_s390_cpus_to_pv", "KVM_S390_PV_COMMAND",
             "kvm_s390_handle_pv"),
]
CYCLE = LockCycle(["vcpu->mutex", "matrix_dev->lock", "kvm->lock"], list(EDGES), reachable=True)


def test_lockdep_names_members_with_ampersand_static_locks_bare() -> None:
    assert lockdep_name("kvm->lock") == "&kvm->lock"
    assert lockdep_name("kvm->arch.crypto.pqap_hook_rwsem") == "&kvm->arch.crypto.pqap_hook_rwsem"
    assert lockdep_name("ap_perms_mutex") == "ap_perms_mutex"  # DEFINE_MUTEX: no "&"
    assert lockdep_name("&kvm->lock") == "&kvm->lock"


def test_chain_numbered_from_the_held_lock_down_to_the_new_one() -> None:
    text = render_cycle(CYCLE)
    lines = text.splitlines()
    assert lines[:3] == ["=" * 54, "WARNING: possible circular locking dependency detected", "-" * 54]
    assert "pv is trying to acquire lock:\n(&vcpu->mutex){+.+.}-{3:3}, at: kvm_s390_cpus_to_pv\n" in text
    assert "but task is already holding lock:\n(&kvm->lock){+.+.}-{3:3}, at: kvm_s390_handle_pv\n" in text
    entries = [line for line in lines if line.startswith("-> #")]
    assert entries == ["-> #2 (&kvm->lock){+.+.}-{3:3}:", "-> #1 (&matrix_dev->lock){+.+.}-{3:3}:",
                       "-> #0 (&vcpu->mutex){+.+.}-{3:3}:"]
    k = lines.index("-> #2 (&kvm->lock){+.+.}-{3:3}:")
    assert lines[k + 1:k + 4] == [
        "       kvm_arch_crypto_set_masks", "       assign_adapter_store",
        "       apcheck: admin took it while holding &matrix_dev->lock (taken in assign_adapter_store)"]
    k = lines.index("-> #0 (&vcpu->mutex){+.+.}-{3:3}:")
    assert lines[k + 1:k + 3] == ["       kvm_s390_cpus_to_pv", "       KVM_S390_PV_COMMAND"]
    # each lock once, from the new lock to the held one
    assert "Chain exists of:\n  &vcpu->mutex --> &matrix_dev->lock --> &kvm->lock\n" in text
    assert "apcheck: reachable deadlock (an explored run blocks on these locks)" in text
    assert text.rstrip().endswith("*** DEADLOCK ***")


def test_two_cpu_scenario_as_the_kernel_prints_it() -> None:
    assert unsafe_scenario(CYCLE) == [
        " Possible unsafe locking scenario:",
        "",
        "       CPU0                    CPU1",
        "       ----                    ----",
        "  lock(&kvm->lock);",
        "                               lock(&matrix_dev->lock);",
        "                               lock(&kvm->lock);",
        "  lock(&vcpu->mutex);",
        "",
        " *** DEADLOCK ***",
    ]


def test_two_lock_cycle_has_no_chain_line_and_marks_reads() -> None:
    edges = [LockEdge("a", "b->sem", "w", "r", "t1", "f1", "op1"), LockEdge("b->sem", "a", "r", "w", "t2", "f2", "op2")]
    text = render_cycle(LockCycle(["a", "b->sem"], edges, reachable=False))
    assert "apcheck: possible (cycle only; no explored run deadlocked)" in text
    assert "Chain exists of" not in text
    assert "-> #1 (&b->sem){++++}-{3:3}:" in text
    assert "-> #0 (a){+.+.}-{3:3}:" in text
    assert "  rlock(&b->sem);" in text and "  lock(a);" in text
    assert text.count("*** DEADLOCK ***") == 1


def test_recursive_locking() -> None:
    text = render_cycle(LockCycle(["m->lock"], [LockEdge("m->lock", "m->lock", "w", "w", "t", "f", "op")], True))
    assert "WARNING: possible recursive locking detected" in text
    assert "       CPU0\n       ----\n  lock(&m->lock);\n  lock(&m->lock);\n\n *** DEADLOCK ***" in text
    assert "May be due to missing lock nesting notation" in text


def test_held_locks_at_the_end_of_a_trace_with_the_taking_function() -> None:
    trace = Trace(["a", "b"], [
        TraceStep(1, "a", "f_lock", "op", "mutex_lock(x->l)", ["x->l"], []),
        TraceStep(2, "a", "g_lock", "op", "down_read(y->s)", ["x->l", "y->s(r)"], []),
        TraceStep(3, "b", "h_lock", "op", "mutex_lock(z)", ["z"], []),
        TraceStep(4, "b", "h_unlock", "op", "mutex_unlock(z)", [], []),
    ], [])
    assert held_locks_by_thread(trace) == {"a": [("x->l", "f_lock"), ("y->s(r)", "g_lock")], "b": []}
    text = render_cycle(CYCLE, trace)
    assert "2 locks held by a:\n #0: (&x->l){+.+.}-{3:3}, at: f_lock\n #1: (&y->s){++++}-{3:3}, at: g_lock" in text


def test_v15_deadlock_reads_like_a_hung_task_report() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "checker", "check", "specs/v15-lockdep.yaml"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    text = out.stdout
    assert ("deadlock: no thread can move\n"
            "INFO: task vcpu0 blocked in handle_pqap: mutex_lock(&matrix_dev->lock), held by admin\n"
            "INFO: task admin blocked in kvm_arch_crypto_set_masks: mutex_lock(&kvm0->lock), held by pv\n"
            "INFO: task pv blocked in kvm_s390_cpus_to_pv: mutex_lock(&kvm0.vcpu0->mutex), held by vcpu0\n"
            "1 lock held by vcpu0:\n"
            " #0: (&kvm0.vcpu0->mutex){+.+.}-{3:3}, at: kvm_vcpu_ioctl\n") in text
    assert "-> #2 (&kvm->lock){+.+.}-{3:3}:\n       kvm_arch_crypto_set_masks\n" in text
    assert "Chain exists of:\n  &vcpu->mutex --> &matrix_dev->lock --> &kvm->lock\n" in text
    assert "1 lock held by pv:\n #0: (&kvm0->lock){+.+.}-{3:3}, at: kvm_s390_handle_pv" in text


def test_scenario_parent_is_the_lock_before_the_held_one() -> None:
    """lockdep's first_parent: the chain reaches the held lock (target) from locks[-2]; in a two-lock
    cycle that is the new lock itself. CPU1 prints lock( whatever the mode; the chain line names
    source --> parent --> target only (print_circular_lock_scenario)."""
    two = render_cycle(LockCycle(["a", "b->sem"], [LockEdge("a", "b->sem", "w", "r", "t1", "f1", "op1"),
                                                   LockEdge("b->sem", "a", "r", "w", "t2", "f2", "op2")], False))
    assert two.splitlines()[-6:-2] == ["  rlock(&b->sem);", " " * 31 + "lock(a);", " " * 31 + "lock(&b->sem);",
                                       "  lock(a);"]
    locks = ["a", "b", "c", "d"]
    edges = [LockEdge(x, y, "w", "w", "t", "f", "op") for x, y in zip(locks, locks[1:] + locks[:1])]
    four = render_cycle(LockCycle(locks, edges, False))
    assert "Chain exists of:\n  a --> c --> d\n" in four
    assert four.splitlines()[-6:-2] == ["  lock(d);", " " * 31 + "lock(c);", " " * 31 + "lock(d);", "  lock(a);"]


def test_narrow_width_moves_the_cpu1_column_and_wraps_long_lines() -> None:
    cls = ["matrix_dev->guests_lock_long", "ap_perms_mutex"]
    edges = [LockEdge(cls[0], cls[1], "w", "w", "admin", "assign_adapter_store", "op"),
             LockEdge(cls[1], cls[0], "w", "w", "bus", "vfio_ap_mdev_resource_in_use", "op")]
    text = render_cycle(LockCycle(cls, edges, True), width=50)
    assert max(len(line) for line in text.splitlines()) <= 50
    assert " " * 14 + "lock(&matrix_dev->guests_lock_long);" in text.splitlines()  # 50 - its length
    assert text.splitlines()[:3] == ["=" * 50, "WARNING: possible circular locking dependency", "    detected"]
    wide = render_cycle(LockCycle(cls, edges, True))
    def words(t: str) -> list[str]:  # every word but the rules
        return [w for w in t.split() if set(w) - {"=", "-"}]
    assert words(text) == words(wide)
