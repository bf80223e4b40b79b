"""Memory-safety messages name the object once, with the step that freed it (issue 10, point 5)."""

from __future__ import annotations

from pathlib import Path

from helpers_models import check, prop

from checker.lang.layout import int_field
from checker.lang.program import ProgramBuilder
from checker.report.objects import freed_by
from checker.report.results import VIOLATED, Trace, TraceStep


def two_kvms_one_freed() -> ProgramBuilder:
    """T1 drops kvm1 (the pointer's target); T2 dereferences the pointer."""
    pb = ProgramBuilder("uaf-named")
    pool = pb.pool("kvm", ["kvm0", "kvm1"], init_alive=[0, 1], ctype="struct kvm")
    ptr = pb.var(int_field("mdev.kvm", -1, 1, 1))
    t1 = pb.thread("qemu")
    t1.step("kvm_put_kvm", "kvm_destroy_vm", objects=[pb.free(pool, 1)])
    t2 = pb.thread("vcpu")
    t2.step("handle_pqap", "mdev->kvm->arch", checks=pb.use(pool, ptr, "mdev->kvm->arch"))
    return pb


def test_use_after_free_names_type_instance_statement_and_freeing_step_once() -> None:
    ms = prop(check(two_kvms_one_freed().build()), "memory-safety")
    assert ms.status == VIOLATED
    assert ms.detail == "use after free of struct kvm kvm1: mdev->kvm->arch, freed by kvm_put_kvm (qemu, step 1)"
    assert ms.detail.count("kvm1") == 1
    assert ms.trace is not None and ms.trace.final == "vcpu fires handle_pqap: use after free of struct kvm kvm1: " \
        "mdev->kvm->arch"


def test_freed_by_needs_the_named_instance() -> None:
    steps = [TraceStep(1, "a", "kfree_obj", "", "kfree", [], [("obj0.state", "alive", "freed")])]
    trace = Trace(["a"], steps, [0])
    assert freed_by(trace, "use after free of struct obj obj0: x") == ", freed by kfree_obj (a, step 1)"
    assert freed_by(trace, "use after free of struct obj obj1: x") == ""
    assert freed_by(trace, "use after free of obj") == ""  # an unnamed instance: nothing to add
    assert freed_by(None, "use after free of struct obj obj0") == ""


def test_vfio_ap_messages_name_struct_kvm_once() -> None:
    from checker.search.run import build_program, check_program
    from checker.spec.options import Options
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    root = Path(__file__).resolve().parent.parent
    loaded = load_spec(str(root / "specs/v17.yaml"), default_registry())
    result = check_program(build_program(loaded.design, loaded.scenario), Options(quiet=True), "x", "y")
    ms = prop(result, "memory-safety")
    assert ms.detail == "use after free of struct kvm kvm0: kvm->lock, freed by kvm_vcpu_release (vcpu0, step 33)"


def test_swimlane_points_to_the_closing_line_instead_of_repeating_it() -> None:
    from checker.report.report_text import render_trace

    msg = "use after free of struct kvm kvm0: x, freed by kvm_put_kvm (a, step 1)"
    steps = [TraceStep(1, "a", "kvm_put_kvm", "", "free", [], [("kvm0.state", "alive", "freed")]),
             TraceStep(2, "b", "use", "", "kvm->x", [], [], note=f"memory-safety: {msg}")]
    text = render_trace(Trace(["a", "b"], steps, [0, 1], final=f"b fires use: {msg}"))
    assert "[memory-safety: see below]" in text and text.count("struct kvm kvm0") == 1
    alone = render_trace(Trace(["a", "b"], steps, [0, 1]))  # no closing line: the note stays whole
    assert f"[memory-safety: {msg}]" in " ".join(alone.split())
