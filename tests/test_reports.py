"""Reports: text swimlanes and lockdep blocks, versioned JSON, DOT lock graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.report.report_dot import lock_graph_dot
from checker.report.report_json import (
    load_report,
    result_to_dict,
    result_to_json,
    trace_from_dict,
)
from checker.report.report_text import (
    render_result,
    render_trace,
)
from checker.report.results import (
    BOUNDED,
    HOLDS,
    VIOLATED,
    CheckResult,
    LockCycle,
    LockEdge,
    PropertyResult,
    Stats,
    Trace,
    TraceStep,
)

THREADS = ["T1_vcpu_run", "T2_assign", "T3_pv"]
CHAIN = "vcpu_mutex --> matrix_lock --> kvm_lock"


def deadlock_trace() -> Trace:
    return Trace(
        threads=list(THREADS),
        steps=[
            TraceStep(1, "T1_vcpu_run", "kvm_vcpu_ioctl", "KVM_RUN", "mutex_lock(vcpu_mutex)", ["vcpu_mutex"],
                      [("vcpu_mutex.owner", "-", "T1_vcpu_run")]),
            TraceStep(2, "T2_assign", "assign_adapter_store", "assign_adapter", "mutex_lock(matrix_lock)",
                      ["matrix_lock"], [("matrix_lock.owner", "-", "T2_assign"), ("mdev.apm", "0x0", "0x1")]),
            TraceStep(3, "T3_pv", "kvm_s390_handle_pv", "KVM_S390_PV_COMMAND", "mutex_lock(kvm_lock)", ["kvm_lock"],
                      [("kvm_lock.owner", "-", "T3_pv")], note="all three now block"),
        ],
        actions=[0, 4, 7],
        final="deadlock: 3 threads blocked",
        waits=[
            "T1_vcpu_run waits for matrix_lock held by T2_assign",
            "T2_assign waits for kvm_lock held by T3_pv",
            "T3_pv waits for vcpu_mutex held by T1_vcpu_run",
        ],
    )


CYCLE_EDGES = [
    LockEdge("vcpu_mutex", "matrix_lock", "w", "w", "T1_vcpu_run", "handle_pqap", "KVM_RUN", "kvm_vcpu_ioctl"),
    LockEdge("matrix_lock", "kvm_lock", "w", "w", "T2_assign", "kvm_arch_crypto_set_masks", "assign_adapter",
             "assign_adapter_store"),
    LockEdge("kvm_lock", "vcpu_mutex", "w", "w", "T3_pv", "kvm_s390_cpus_to_pv", "KVM_S390_PV_COMMAND",
             "kvm_s390_handle_pv"),
]
# not on the cycle; read mode: the PQAP hook is called under the hook rwsem taken for read
HOOK_EDGE = LockEdge("vcpu_mutex", "hook_rwsem", "w", "r", "T1_vcpu_run", "kvm_s390_handle_pqap", "KVM_RUN")


def make_result() -> CheckResult:
    return CheckResult(
        spec="specs/v15-lockdep.yaml",
        design="v15",
        result=VIOLATED,
        stats=Stats(states=1234, transitions=5678, deadlock_states=2, max_depth=9, seconds=0.123456,
                    complete=True, store="fingerprint", state_bits=40, collision_probability=1.2e-9),
        properties=[
            PropertyResult("deadlock", "deadlock", VIOLATED, "reachable deadlock (shortest trace)",
                           "no reachable state where unfinished threads all block", "lockdep",
                           deadlock_trace()),
            PropertyResult("lock-order", "lock-order", VIOLATED, "cycle vcpu_mutex -> matrix_lock -> kvm_lock"),
            PropertyResult("memory-safety", "memory-safety", HOLDS, "no use after free"),
        ],
        lock_edges=CYCLE_EDGES + [HOOK_EDGE],
        cycles=[LockCycle(["vcpu_mutex", "matrix_lock", "kvm_lock"], list(CYCLE_EDGES), reachable=True)],
        lock_classes=["vcpu_mutex", "matrix_lock", "kvm_lock", "hook_rwsem"],
    )


# --------------------------------------------------------------------------- JSON


def test_json_key_order_at_every_level() -> None:
    d = result_to_dict(make_result())
    assert list(d) == ["version", "spec", "name", "design", "result", "stats", "properties", "lock_order"]
    assert d["version"] == 2
    assert list(d["stats"]) == [
        "states", "transitions", "deadlock_states", "max_depth", "seconds", "complete", "limit", "strategy",
        "store", "state_bits", "collision_probability", "states_per_second", "peak_memory_mb", "reductions",
        "workers", "backend",
    ]
    prop = d["properties"][0]
    assert list(prop) == ["name", "kind", "status", "detail", "description", "source", "trace"]
    assert d["properties"][1]["trace"] is None
    trace = prop["trace"]
    assert list(trace) == ["length", "spec", "design", "digest", "threads", "actions", "steps", "final", "waits",
                           "scenario", "blocked", "initial"]
    assert list(trace["steps"][0]) == [
        "index", "thread", "function", "label", "operation", "action", "locks_held", "changes", "note",
    ]
    assert list(trace["steps"][1]["changes"][1]) == ["field", "before", "after"]
    assert list(d["lock_order"]) == ["classes", "edges", "cycles"]
    edge_keys = ["src", "dst", "src_mode", "dst_mode", "thread", "function", "operation", "src_function"]
    assert list(d["lock_order"]["edges"][0]) == edge_keys
    cycle = d["lock_order"]["cycles"][0]
    assert list(cycle) == ["locks", "reachable", "edges", "scenario"]
    assert list(cycle["edges"][0]) == edge_keys


def test_json_text_order_values_and_rounding() -> None:
    text = result_to_json(make_result())
    assert text.endswith("}\n")
    assert text.startswith('{\n  "version": 2,\n  "spec": ')
    d = json.loads(text)
    assert d["stats"]["seconds"] == 0.123
    assert d["stats"]["states_per_second"] == round(1234 / 0.123456, 1)
    assert d["stats"]["collision_probability"] == 1.2e-9
    assert d["properties"][0]["trace"]["length"] == 3
    change = d["properties"][0]["trace"]["steps"][1]["changes"][1]
    assert change == {"field": "mdev.apm", "before": "0x0", "after": "0x1"}
    assert d["lock_order"]["cycles"][0]["edges"][2]["function"] == "kvm_s390_cpus_to_pv"
    assert d["lock_order"]["classes"] == ["vcpu_mutex", "matrix_lock", "kvm_lock", "hook_rwsem"]
    # deterministic: the same result serialises to the same bytes
    assert result_to_json(make_result()) == text


def test_json_keeps_non_ascii() -> None:
    result = make_result()
    result.properties[0].detail = "deadlock \u2014 shortest"
    assert "\u2014" in result_to_json(result)


def test_trace_round_trip() -> None:
    original = deadlock_trace()
    original.scenario = ["       CPU0", "  lock(vcpu_mutex);"]
    d = result_to_dict(make_result())
    d["properties"][0]["trace"]["scenario"] = list(original.scenario)
    back = trace_from_dict(json.loads(json.dumps(d))["properties"][0]["trace"])
    assert back == original
    assert isinstance(back.steps[0].changes[0], tuple)


def test_trace_from_dict_rejects_bad_length_and_types() -> None:
    d = result_to_dict(make_result())["properties"][0]["trace"]
    with pytest.raises(ValueError, match=r"trace.length: says 4 but there are 3 steps"):
        trace_from_dict({**d, "length": 4})
    bad_step = {**d["steps"][0], "index": "1"}
    with pytest.raises(ValueError, match=r"trace.steps\[0\].index: expected int, got str"):
        trace_from_dict({**d, "steps": [bad_step]})
    with pytest.raises(ValueError, match=r"trace: missing key 'threads'"):
        trace_from_dict({k: v for k, v in d.items() if k != "threads"})


def test_load_report(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(result_to_json(make_result()), encoding="utf-8")
    assert load_report(good) == result_to_dict(make_result())

    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps({"version": 1, "spec": "x"}), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_report(v1)
    assert str(info.value) == "unsupported report version 1 (this apcheck reads version 2)"

    true_version = tmp_path / "bool.json"
    true_version.write_text('{"version": true}', encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported report version True"):
        load_report(true_version)

    garbage = tmp_path / "garbage.json"
    garbage.write_text("spec: v15\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"garbage.json: not a JSON report \(Expecting value at line 1 column 1\)"):
        load_report(garbage)

    listing = tmp_path / "list.json"
    listing.write_text("[1]", encoding="utf-8")
    with pytest.raises(ValueError, match="top level is a list"):
        load_report(listing)

    unversioned = tmp_path / "none.json"
    unversioned.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match='no "version" key'):
        load_report(unversioned)


# --------------------------------------------------------------------------- text


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split a tabulate "simple" table into header cells and rows, by the dash line's spans."""
    lines = text.splitlines()
    rule_at = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(lines[rule_at] + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    # the last column runs to the end of the line (wider cells never exceed the rule in "simple")
    spans[-1] = (spans[-1][0], 10_000)

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    top = max([i + 1 for i in range(rule_at) if not lines[i].strip()] + [0])  # skip a title above the table
    headers = [" ".join(col) for col in zip(*(cells(h) for h in lines[top:rule_at]))]
    rows = []
    for line in lines[rule_at + 1:]:
        if not line.strip():
            break
        rows.append(cells(line))
    return [" ".join(h.split()) for h in headers], rows


def test_swimlane_puts_each_step_in_its_thread_column() -> None:
    text = render_trace(deadlock_trace(), title="deadlock: reachable")
    assert text.startswith("== deadlock: reachable ==\n")
    headers, rows = parse_table(text)
    assert headers == ["#", "T1_vcpu_run (KVM_RUN)", "T2_assign (assign_adapter)",
                       "T3_pv (KVM_S390_PV_COMMAND)", "held", "changes"]
    first_lines = [r for r in rows if r[0]]  # continuation lines of wrapped cells have no step number
    assert [r[0] for r in first_lines] == ["1", "2", "3"]
    for k, row in enumerate(first_lines):
        filled = [i for i in range(1, 4) if row[i]]
        assert filled == [k + 1], row
    assert first_lines[0][1] == "kvm_vcpu_ioctl: mutex_lock(vcpu_mutex)"
    assert first_lines[1][2] == "assign_adapter_store:"  # wrapped at the 44-char cap
    assert first_lines[1][4] == "matrix_lock"
    assert first_lines[1][5] == "matrix_lock.owner: - -> T2_assign; mdev.apm:"
    step3 = "\n".join(line for line in text.splitlines() if "kvm_s390_handle_pv" in line or "block]" in line)
    assert "[all three now block]" in " ".join(step3.split())
    assert "T3_pv waits for vcpu_mutex held by T1_vcpu_run" in text
    assert "deadlock: 3 threads blocked" in text


def test_swimlane_shows_operation_changes_inline() -> None:
    trace = deadlock_trace()
    trace.steps.append(TraceStep(4, "T1_vcpu_run", "vfio_ap_mdev_open", "open_device", "mutex_lock(matrix_lock)",
                                 ["vcpu_mutex", "matrix_lock"], []))
    headers, rows = parse_table(render_trace(trace))
    assert headers[1] == "T1_vcpu_run"  # no longer constant: operation moves into the cells
    column = [r[1] for r in rows if r[1]]
    assert column == ["(KVM_RUN)", "kvm_vcpu_ioctl: mutex_lock(vcpu_mutex)", "(open_device)",
                      "vfio_ap_mdev_open: mutex_lock(matrix_lock)"]


def test_changes_are_truncated() -> None:
    trace = deadlock_trace()
    trace.steps[0].changes = [(f"field{i}", "0", "1") for i in range(20)]
    _, rows = parse_table(render_trace(trace))
    changes = "".join(r[5] for r in rows[: next(i for i, r in enumerate(rows[1:], 1) if r[0])])
    assert changes.endswith("...")
    assert len(changes) <= 80


def test_self_cycle_and_unlisted_thread() -> None:
    headers, rows = parse_table(render_trace(Trace(["a"], [TraceStep(1, "zz", "f", "", "act", [], [])], [0])))
    assert headers == ["#", "a", "zz", "held", "changes"]
    assert rows == [["1", "", "f: act", "", ""]]
    assert "(no steps: the initial state already shows this)" in render_trace(Trace(["a"], [], []))


def test_render_result() -> None:
    text = render_result(make_result())
    lines = text.splitlines()
    assert lines[0] == "spec specs/v15-lockdep.yaml  design v15  result VIOLATED"
    verdict_text = text.split("\n\n")[1]
    headers, rows = parse_table(verdict_text)
    assert headers == ["property", "status", "detail"]
    assert [r[:2] for r in rows] == [["deadlock", VIOLATED], ["lock-order", VIOLATED], ["memory-safety", HOLDS]]
    assert rows[0][2] == "reachable deadlock (shortest trace); trace 3 steps"
    assert "store            fingerprint, collision probability ~1.2e-09" in lines
    assert "states           1,234" in lines
    assert "BOUNDED" not in text
    assert "== deadlock: reachable deadlock (shortest trace) ==" in lines
    assert "== lock-order: 1 cycle ==" in lines
    assert CHAIN in text
    assert "\x1b[" not in text
    assert text.isascii()


def test_render_result_bounded_and_color() -> None:
    result = make_result()
    result.stats.complete = False
    result.stats.limit = "max-states"
    result.stats.store = "exact"
    result.properties[2].status = BOUNDED
    text = render_result(result)
    assert "search BOUNDED by max-states: counts are partial" in text
    assert "store            exact" in text.splitlines()
    colored = render_result(result, color=True)
    assert "\x1b[31mVIOLATED\x1b[0m" in colored and "\x1b[33mBOUNDED\x1b[0m" in colored


# --------------------------------------------------------------------------- DOT


def test_dot_lock_graph() -> None:
    dot = lock_graph_dot(make_result())
    lines = dot.splitlines()
    assert lines[0] == "digraph lock_order {" and lines[-1] == "}"
    nodes = [line.split()[0] for line in lines if "[label=" in line and "->" not in line]
    assert nodes == ['"hook_rwsem"', '"kvm_lock"', '"matrix_lock"', '"vcpu_mutex"']
    edges = [line.strip() for line in lines if " -> " in line]
    assert edges == [
        '"kvm_lock" -> "vcpu_mutex" [label="kvm_s390_cpus_to_pv", color=red, penwidth=2];',
        '"matrix_lock" -> "kvm_lock" [label="kvm_arch_crypto_set_masks", color=red, penwidth=2];',
        '"vcpu_mutex" -> "hook_rwsem" [label="kvm_s390_handle_pqap (r)"];',
        '"vcpu_mutex" -> "matrix_lock" [label="handle_pqap", color=red, penwidth=2];',
    ]
    # input order does not matter
    shuffled = make_result()
    shuffled.lock_edges.reverse()
    shuffled.lock_classes.reverse()
    assert lock_graph_dot(shuffled) == dot


def test_dot_quotes_names() -> None:
    result = make_result()
    result.lock_edges = [LockEdge('a"b', "c\\d", "r", "w", "t", "f", "op")]
    result.cycles = []
    dot = lock_graph_dot(result)
    assert '"a\\"b" -> "c\\\\d" [label="f\\nholding a\\"b (r)"];' in dot


def _key_shape(value: object) -> object:
    """Keys (in order) at every level, with list items collapsed to the first one."""
    if isinstance(value, dict):
        return [(k, _key_shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_shape(value[0])] if value else []
    return None


def test_schema_doc_example_matches_output() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "json-schema.md").read_text(encoding="utf-8")
    example = json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0])
    assert example["version"] == 2
    assert _key_shape(example) == _key_shape(result_to_dict(make_result()))
