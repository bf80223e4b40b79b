"""A trace step shows the branch that ran, not every branch (issue 10, point 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers_models import check, prop

from checker.cli.cli import build, main, resolve_options
from checker.lang.design import OpCall, Scenario, ThreadSpec
from checker.lang.layout import bool_field
from checker.lang.program import ProgramBuilder
from checker.search.progmodel import ProgramModel
from checker.search.run import check_program, replay_trace
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def two_openers():  # type: ignore[no-untyped-def]
    """Two threads open a device that admits one owner: the second gets -EPERM."""
    pb = ProgramBuilder("branches")
    taken = pb.var(bool_field("dev.taken"))
    failed = pb.var(bool_field("ghost.eperm"))
    for name in ("qemu0", "qemu1"):
        t = pb.thread(name)
        t.step("vfio_ap_mdev_set_kvm", "if taken: -EPERM; else take it; return",
               updates={pb.field("dev.taken"): True, pb.field("ghost.eperm"): taken},
               branches=[(taken, "another mdev has this kvm: -EPERM"), (taken == 0, "take it"),
                         (None, "return")])
    pb.sometimes("eperm", failed, "the second open fails")
    return pb.build()


def test_each_step_shows_only_its_branch() -> None:
    r = check(two_openers())
    witness = prop(r, "eperm").trace
    assert witness is not None
    assert [(s.thread, s.action) for s in witness.steps] == [
        ("qemu0", "take it; return"), ("qemu1", "another mdev has this kvm: -EPERM; return")]


def test_action_keeps_the_whole_text_for_other_views() -> None:
    program = two_openers()
    assert program.actions[0].text == "if taken: -EPERM; else take it; return"
    assert program.actions[0].shown_text(lambda cond: False) == "return"


SPEC = """\
design: final
constants: {adapters: [3], domains: [5], vms: 1, mdevs: 2}
threads:
  - {name: q0, run: [open_device: {mdev: 0, vm: 0}]}
  - {name: q1, run: [open_device: {mdev: 1, vm: 0}]}
properties:
  only: [second-open-eperm]
  sometimes:
    - {name: second-open-eperm, expr: q1.ret == EPERM}
"""


def test_vfio_ap_open_shows_the_eperm_branch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "open.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    shown = [(s["thread"], s["action"]) for s in steps if s["function"] == "vfio_ap_mdev_set_kvm"
             and "kvm" in s["action"] and "pqap_hook" not in s["action"]]
    assert shown == [
        ("q0", "kvm_get_kvm; matrix_mdev->kvm = kvm; vfio_ap_mdev_update_guest_apcb; release_update_locks_for_kvm"),
        ("q1", "another mdev has this kvm: -EPERM; release_update_locks_for_kvm")]


def test_v15_assign_shows_which_check_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "assign.yaml"
    spec.write_text("""\
design: v15
constants: {adapters: [3], domains: [5], mdevs: 2, matrix: ["mdev1: 3 x 5"]}
threads:
  - {name: a, run: [assign_domain: {mdev: 0, apqi: 5}, assign_adapter: {mdev: 0, apid: 3}]}
properties:
  only: [refused]
  sometimes:
    - {name: refused, expr: a.ret == EADDRINUSE}
""", encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    assert [s["action"] for s in steps if s["function"] == "assign_adapter_store"][-1] == (
        "validate: APQN assigned to another mdev: -EADDRINUSE; "
        "mutex_unlock(ap_perms_mutex); mutex_unlock(matrix_dev->lock)")


@pytest.mark.parametrize(("design", "ok", "eperm"), [
    ("5.15", "kvm_get_kvm; matrix_mdev->kvm = kvm; kvm_arch_crypto_set_masks(matrix); unlock",
     "another mdev has this kvm: -EPERM; unlock"),
    ("v17", "add ap_guest; kvm_get_kvm; kvm->arch.crypto.data = matrix_mdev; set masks; unlock",
     "another guest has this kvm: -EPERM; unlock"),
])
def test_older_set_kvm_shows_the_branch_that_ran(design: str, ok: str, eperm: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "open.yaml"
    spec.write_text(SPEC.replace("design: final", f"design: \"{design}\""), encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    shown = [(s["thread"], s["action"]) for s in steps
             if s["function"] == "vfio_ap_mdev_set_kvm" and s["action"] in (ok, eperm)]
    assert shown == [("q0", ok), ("q1", eperm)]


# ---------------------------------------------------------------- every step of every design

# What marks an unresolved alternative in the text a trace shows for a step: the step still says what
# would happen under a condition instead of what did: the words "if", "else", "unless", "otherwise",
# "maybe" or "may be", a C conditional "?", or "WARN_ON(" (a condition with its consequence).
UNRESOLVED = re.compile(r"\b(if|else|unless|otherwise|maybe)\b|\bmay be\b|\?|WARN_ON\(")
SPECS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/history/*.yaml")])


def test_the_marker_catches_the_old_texts() -> None:
    for text in ("if another mdev has this kvm: -EPERM; kvm_get_kvm", "zcrypt unbinds: ap_zapq (if configured)",
                 "nothing added to it: continue; else mutex_lock", "kvm_put_kvm (may be the last: kvm_destroy_vm)",
                 "WARN_ON(hook mismatch -> -EACCES); pqap_hook = NULL", "unless a config add is pending: filter"):
        assert UNRESOLVED.search(text), text
    assert not UNRESOLVED.search("another mdev has this kvm: -EPERM; release_update_locks_for_kvm")


@pytest.mark.parametrize("spec", SPECS)
def test_every_alternative_step_of_every_design_has_branches(spec: str) -> None:
    """Static half: a step whose full text names alternatives gives branches, and no branch text does."""
    loaded = load_spec(str(ROOT / spec), default_registry(plugins=False))
    for act in build(loaded).actions:
        assert all(not UNRESOLVED.search(seg) for _, seg in act.branches), (act.function, act.branches)
        assert act.branches or not UNRESOLVED.search(act.text), (act.function, act.text)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_no_trace_step_shows_an_unresolved_alternative(spec: str) -> None:
    """Dynamic half: every step of every trace of every spec (the branch conditions cover the states
    that occur: a step none of whose conditions holds would fall back to its full text)."""
    loaded = load_spec(str(ROOT / spec), default_registry(plugins=False))
    program = build(loaded)
    result = check_program(program, resolve_options(loaded, program, quiet=True), spec, loaded.design.name)
    steps = [s for p in result.properties if p.trace for s in p.trace.steps]
    assert all(s.action and not UNRESOLVED.search(s.action) for s in steps), \
        [(s.function, s.action) for s in steps if not s.action or UNRESOLVED.search(s.action)]


def run_in_order(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    """(thread, function, shown text) of one run: always the first thread that can move (deterministic)."""
    spec = tmp_path / "order.yaml"
    spec.write_text(text, encoding="utf-8")
    program = build(load_spec(str(spec), default_registry(plugins=False)))
    model = ProgramModel(program)
    s, aids = model.init_states()[0], []
    while succ := model.successors(s):
        aid, s = min(succ, key=lambda an: (program.actions[an[0]].thread, an[0]))
        aids.append(aid)
        if s < 0:
            break
    return [(st.thread, st.function, st.action) for st in replay_trace(program, aids).steps]


def test_5_12_priv_c_without_a_hook(tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, """\
design: "5.12"
constants: {adapters: [3], domains: [5], vms: 1, mdevs: 1}
threads: [{name: vcpu0, run: [kvm_run: {vm: 0}]}]
""")
    assert [a for _, f, a in steps if f == "handle_pqap"] == [
        "priv.c: pqap_hook == NULL: response code 0x01, cc 3", "priv.c: return"]


def test_final_apie_off_returns_eopnotsupp(tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, """\
design: final
constants: {adapters: [3], domains: [5], vms: 1, mdevs: 1, apie_off: [0]}
threads: [{name: vcpu0, run: [kvm_run: {vm: 0}]}]
""")
    assert steps[0][2] == ("mutex_lock(vcpu->mutex); KVM_RUN; PQAP intercept -> priv.c handle_pqap; "
                           "!(sie_block->eca & ECA_APIE): return -EOPNOTSUPP")


def test_final_queue_remove_in_and_out_of_the_shadow(tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, """\
design: final
constants: {adapters: [3, 4], domains: [5], vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}
threads: [{name: u, run: [unbind_queue: {apid: 3, apqi: 5}, unbind_queue: {apid: 4, apqi: 5}]}]
""")
    assert [a for _, f, a in steps if f == "vfio_ap_mdev_remove_queue"] == [
        "in the guest's shadow: unplug APID; update_guest_apcb; reset_queues_for_apid; unlink; kfree(q); "
        "release_update_locks_for_queue",
        "vfio_ap_mdev_reset_queue; unlink; kfree(q); release_update_locks_for_queue"]


def test_v17_second_hook_registration_is_refused(tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, """\
design: v17
constants: {adapters: [3], domains: [5], vms: 1, mdevs: 1}
threads: [{name: other, run: [hook_register_other]}]
""")
    assert steps[-1][1:] == ("kvm_s390_pqap_hook_register",
                             "second driver: pqap_hook already set: -EACCES; mutex_unlock(pqap_hook_lock)")


@pytest.mark.parametrize(("design", "shown"), [
    ("5.15", ["matrix_mdev->kvm set: -EBUSY; unlock", "matrix_mdev->kvm set: -EBUSY; unlock"]),
    ("final", ["set adm bit; shadow adm = adm & host config; vfio_ap_mdev_update_guest_apcb; "
               "release_update_locks_for_mdev",
               "clear bit; vfio_ap_mdev_unlink_adapter; in the shadow: vfio_ap_mdev_hot_unplug_adapter (shadow, "
               "guest); reset its queues; unlock"]),
])
def test_sysfs_stores_with_a_guest_running(design: str, shown: list[str], tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, f"""\
design: "{design}"
constants: {{adapters: [3, 4], domains: [5], vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads: [{{name: a, run: [assign_control_domain: {{mdev: 0, apqi: 5}}, unassign_adapter: {{mdev: 0, apid: 3}}]}}]
""")
    assert [a for _, _, a in steps if not a.startswith("mutex_lock(")] == shown


def test_final_unassign_updates_the_guest_only_for_a_shadowed_apid(tmp_path: Path) -> None:
    """unassign_adapter_store: vfio_ap_mdev_hot_unplug_adapter clears the APID from the shadow and
    updates the guest only when the shadow has it (adapter 4 is assigned but not in the host config)."""
    steps = run_in_order(tmp_path, """\
design: final
constants: {adapters: [3, 4], domains: [5], vms: 1, mdevs: 1, matrix: ["mdev0: 3,4 x 5"], attached: ["mdev0 -> kvm0"],
            config_apm: [3]}
threads: [{name: a, run: [unassign_adapter: {mdev: 0, apid: 4}, unassign_adapter: {mdev: 0, apid: 3}]}]
""")
    assert [a for _, f, a in steps if f == "unassign_adapter_store" and not a.startswith("mutex_lock(")] == [
        "clear bit; vfio_ap_mdev_unlink_adapter; not in the shadow: guest unchanged, no reset; unlock",
        "clear bit; vfio_ap_mdev_unlink_adapter; in the shadow: vfio_ap_mdev_hot_unplug_adapter (shadow, guest); "
        "reset its queues; unlock"]


VFIO_AP_DESIGNS = [n for n in default_registry(plugins=False).names() if n != "lock-program"]


@pytest.mark.parametrize("design", VFIO_AP_DESIGNS)
def test_every_operation_of_every_design_has_its_branches(design: str) -> None:
    """Static, beyond the bundled specs: one thread per operation the design offers (and an open of a
    VM without a CRYCB), built, and every step checked as above."""
    d = default_registry(plugins=False).get(design)
    args = {"apid": 4, "apqi": 6, "mdev": 0, "vm": 0, "vcpu": 0, "on": False}
    masks = {"apmask_store": {"reserve": [4], "release": [3]}, "aqmask_store": {"reserve": [6], "release": [5]}}
    threads = [ThreadSpec(f"t{i}", [OpCall(op, masks.get(op) or {k: v for k, v in args.items() if k in sig.params})])
               for i, (op, sig) in enumerate(d.operations.items())]
    threads.append(ThreadSpec("nocrycb", [OpCall("open_device", {"mdev": 1, "vm": 1})]))
    constants = {"adapters": [3, 4], "domains": [5, 6], "vms": 2, "mdevs": 2, "matrix": ["mdev0: 3 x 5"],
                 "attached": ["mdev0 -> kvm0"], "no_crycb": [1]}
    program = d.build(Scenario("all-operations", design, "", constants, threads))
    assert len(program.threads) == len(d.operations) + 1
    for act in program.actions:
        assert all(not UNRESOLVED.search(seg) for _, seg in act.branches), (act.function, act.branches)
        assert act.branches or not UNRESOLVED.search(act.text), (act.function, act.text)


def test_final_assign_shows_the_refusal_or_whether_the_guest_was_updated(tmp_path: Path) -> None:
    steps = run_in_order(tmp_path, """\
design: final
constants: {adapters: [3, 4, 10, 11], domains: [5], vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"],
            attached: ["mdev0 -> kvm0"], apmask: [4], config_apm: [3, 4, 10]}
threads: [{name: a, run: [assign_adapter: {mdev: 0, apid: 4}, assign_adapter: {mdev: 0, apid: 10},
                          assign_adapter: {mdev: 0, apid: 10}, assign_adapter: {mdev: 0, apid: 11}]}]
""")
    done = "set bit; vfio_ap_mdev_validate_masks; vfio_ap_mdev_link_adapter; vfio_ap_mdev_filter_matrix; "
    assert [a for _, _, a in steps if not a.startswith("mutex_lock(")] == [
        "validate: APQN reserved for zcrypt: -EADDRNOTAVAIL; unlock",
        done + "shadow changed: vfio_ap_mdev_update_guest_apcb; unlock",
        "adapter already assigned: return count (bypass); unlock",  # v6.0 "bypass unnecessary processing"
        done + "shadow unchanged; unlock"]  # adapter 11 is not in the host configuration: filtered out


def test_a_lock_not_taken_says_why(tmp_path: Path) -> None:
    """get_update_locks_for_mdev takes kvm->lock only for an mdev with a guest; the in_use locks only for
    newly reserved bits: a trace says so instead of showing a mutex_lock that did not happen."""
    steps = run_in_order(tmp_path, """\
design: final
constants: {adapters: [3, 4], domains: [5], vms: 1, mdevs: 1, matrix: ["mdev0: 3 x 5"]}
threads: [{name: a, run: [assign_adapter: {mdev: 0, apid: 4}, apmask_store: {release: [4]}]}]
""")
    shown = [(f, a) for _, f, a in steps]
    assert shown[:4] == [("assign_adapter_store", "mutex_lock(ap_perms_mutex)"),
                         ("assign_adapter_store", "mutex_lock(matrix_dev->guests_lock)"),
                         ("assign_adapter_store", "matrix_mdev->kvm == NULL: no kvm->lock"),
                         ("assign_adapter_store", "mutex_lock(matrix_dev->mdevs_lock)")]
    # a release sets no bit of apmask: the commit's test cannot reserve one (test_false_reports_mask_commit
    # shows the test where a write sets bits already reserved)
    assert shown[5:7] == [("apmask_store", "mutex_lock(ap_perms_mutex)"),
                          ("apmask_commit", "commit ap_perms.apm; mutex_unlock(ap_perms_mutex)")]
