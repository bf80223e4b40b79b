"""Spec loading: strict schema, exact messages, positions (fake design, no ap_model)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from checker.lang.design import ScenarioError
from checker.spec.errors import InternalError, SpecError, SpecErrors
from checker.spec.registry import Registry, _optional_module
from checker.spec.spec import (
    LoadedSpec,
    load_spec,
    locate,
    normalize_key,
    scenario_error,
    validate_lemma_names,
    validate_property_names,
)

WriteSpec = Callable[..., Path]

GOOD = """\
name: demo
design: fake
description: two threads
constants:
  domains: 2
  adapters: [3, 4]
threads:
  - name: vcpu0
    run:
      - handle_pqap
      - assign_adapter_store: {mdev: 1, apid: 4}
  - name: admin
    cyclic: true
    run:
      - assign_adapter_store: {apid: 3}
properties:
  only: [deadlock]
check:
  strategy: dfs
  max_states: 1000
  timeout: 60
"""


def load(write_spec: WriteSpec, registry: Registry, text: str) -> LoadedSpec:
    return load_spec(str(write_spec(textwrap.dedent(text))), registry)


def errors(write_spec: WriteSpec, registry: Registry, text: str) -> list[str]:
    """The error lines, with the temp file shown as ``spec.yaml``."""
    path = write_spec(textwrap.dedent(text))
    with pytest.raises(SpecError) as ei:
        load_spec(str(path), registry)
    return [line.replace(str(path), "spec.yaml") for line in ei.value.lines()]


# ---------------------------------------------------------------- valid specs


def test_good_spec_builds_scenario(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD)
    sc = ld.scenario
    assert (sc.name, sc.design, sc.description) == ("demo", "fake", "two threads")
    assert ld.design.name == "fake"
    # defaults filled in for constants and operation parameters
    assert sc.constants == {"adapters": [3, 4], "domains": 2, "mode": "fast", "names": [], "program": None,
                            "strict": False}
    assert [t.name for t in sc.threads] == ["vcpu0", "admin"]
    assert [t.cyclic for t in sc.threads] == [False, True]
    assert [(c.name, c.args) for c in sc.threads[0].run] == [
        ("handle_pqap", {}), ("assign_adapter_store", {"mdev": 1, "apid": 4})]
    assert sc.threads[1].run[0].args == {"mdev": 0, "apid": 3}
    assert ld.check_options == {"strategy": "dfs", "max_states": 1000, "timeout": 60.0}
    assert (ld.only, ld.skip) == (("deadlock",), ())


def test_positions_are_one_based_line_col(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD)
    f = ld.path
    assert ld.where["design"] == f"{f}:2:9"
    assert ld.where["threads[0]"] == f"{f}:8:5"
    assert ld.where["threads[0].run[0]"] == f"{f}:10:9"
    assert ld.where["threads[0].run[1]"] == f"{f}:11:9"  # the call is located at its operation name
    assert ld.where["threads[0].run[1].apid"] == f"{f}:11:47"
    assert ld.scenario.threads[0].run[1].where == f"{f}:11:9"
    assert ld.scenario.where is ld.where


def test_name_defaults_to_file_path(write_spec: WriteSpec, registry: Registry) -> None:
    p = write_spec("design: fake\nconstants: {domains: 1}\n", name="v15-lockdep.yaml")
    assert load_spec(str(p), registry).scenario.name == str(p)


def test_top_level_program_is_sugar_for_a_path_constant(write_spec: WriteSpec, registry: Registry,
                                                        tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.json").write_text("{}")
    ld = load(write_spec, registry, "design: fake\nprogram: models/m.json\nconstants: {domains: 1}\n")
    assert ld.scenario.constants["program"] == str(tmp_path / "models" / "m.json")
    assert locate(ld, "constants.program") == f"{ld.path}:2:10"


def test_yaml_core_schema_not_yaml_1_1(write_spec: WriteSpec, registry: Registry) -> None:
    # YAML 1.1 would read `no` as false and 2024-01-01 as a date; here they are strings
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: 1, strict: no, names: [2024-01-01, 1:20]}
        check: {exact: yes}
        """) == [
        "spec.yaml:2:33: error: constants.strict: expected bool, got str",
        "spec.yaml:3:16: error: check.exact: expected bool, got str",
    ]
    ld = load(write_spec, registry, "design: fake\nconstants: {domains: 0x10, names: [2024-01-01, 1:20, '7']}\n")
    assert ld.scenario.constants["domains"] == 16
    assert ld.scenario.constants["names"] == ["2024-01-01", "1:20", "7"]


# ---------------------------------------------------------------- errors, exact messages


def test_unknown_top_level_key_did_you_mean(write_spec: WriteSpec, registry: Registry) -> None:
    # the typo is reported once, not also as "missing required key 'design'"
    assert errors(write_spec, registry, "desing: fake\n") == [
        "spec.yaml:1:1: error: desing: unknown key 'desing' (did you mean 'design'?)"]


def test_duplicate_key(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants:
          domains: 1
          domains: 2
        """) == ["spec.yaml:4:3: error: constants.domains: duplicate key 'domains' (first at line 3, column 3)"]


def test_wrong_type(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: "2", adapters: [3, x]}
        """) == [
        "spec.yaml:2:22: error: constants.domains: expected int, got str",
        "spec.yaml:2:41: error: constants.adapters[1]: expected int, got str",
    ]


def test_unknown_design_did_you_mean(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, "design: fak\n") == [
        "spec.yaml:1:9: error: design: unknown design 'fak' (did you mean 'fake'?); known designs: broken, fake"]


def test_unknown_operation_did_you_mean(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: 1}
        threads:
          - name: t
            run: [handle_pqap, handle_pqpa]
        """) == [
        "spec.yaml:5:24: error: threads[0].run[1]: unknown operation 'handle_pqpa' (did you mean 'handle_pqap'?)"]


def test_unknown_param_and_missing_required_param(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: 1}
        threads:
          - name: t
            run:
              - assign_adapter_store: {mdev: 0, apdi: 3}
              - handle_pqap: {apid: 3}
        """) == [
        "spec.yaml:6:9: error: threads[0].run[0]: missing required parameter 'apid' of assign_adapter_store",
        ("spec.yaml:6:41: error: threads[0].run[0].apdi: unknown parameter 'apdi' of assign_adapter_store "
        "(did you mean 'apid'?)"),
        ("spec.yaml:7:23: error: threads[0].run[1].apid: unknown parameter 'apid' of handle_pqap "
        "(handle_pqap takes no parameters)"),
    ]


def test_missing_required_constant_and_key(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {adapters: [1]}
        threads:
          - run: [handle_pqap]
        """) == [
        "spec.yaml:2:12: error: constants: missing required constant 'domains'",
        "spec.yaml:4:5: error: threads[0]: missing required key 'name'",
    ]


def test_python_tag_rejected(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: !!python/object/apply:os.system ["touch /tmp/pwned"]}
        """) == [
        ("spec.yaml:2:22: error: constants.domains: tag '!!python/object/apply:os.system' is not allowed: "
        "a spec is plain data (strings, numbers, booleans, null, lists and mappings)")]


def test_local_tag_rejected(write_spec: WriteSpec, registry: Registry) -> None:
    [msg] = errors(write_spec, registry, "design: !mine fake\n")
    assert msg.startswith("spec.yaml:1:9: error: design: tag '!mine' is not allowed")


def test_path_param_to_missing_file(write_spec: WriteSpec, registry: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert errors(write_spec, registry, "design: fake\nconstants: {domains: 1, program: nope.json}\n") == [
        f"spec.yaml:2:34: error: constants.program: no such file: 'nope.json' (looked for {missing})"]


def test_one_of_did_you_mean_and_positive_limits(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: 1}
        check: {strategy: bsf, max_states: 0, timout: 3}
        """) == [
        "spec.yaml:3:19: error: check.strategy: expected one of bfs|dfs|random, got 'bsf' (did you mean 'bfs'?)",
        "spec.yaml:3:36: error: check.max_states: expected a positive int, got 0",
        "spec.yaml:3:39: error: check.timout: unknown option 'timout' (did you mean 'timeout'?)",
    ]


def test_thread_shape_errors(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, """\
        design: fake
        constants: {domains: 1}
        threads:
          - name: t
            run: []
          - name: t
            run:
              - {handle_pqap: {}, assign_adapter_store: {apid: 3}}
        """) == [
        "spec.yaml:5:10: error: threads[0].run: empty run list: a thread runs at least one operation",
        "spec.yaml:6:11: error: threads[1].name: duplicate thread name 't' (first at line 4, column 11)",
        ("spec.yaml:8:9: error: threads[1].run[0]: expected an operation name or a single-key mapping "
        "'operation: {arg: value}', got a mapping with 2 keys"),
    ]


def test_all_errors_collected_in_file_order(write_spec: WriteSpec, registry: Registry) -> None:
    msgs = errors(write_spec, registry, """\
        design: fake
        constants: {domains: x}
        thread: []
        check: {seed: true}
        """)
    assert msgs == [
        "spec.yaml:2:22: error: constants.domains: expected int, got str",
        "spec.yaml:3:1: error: thread: unknown key 'thread' (did you mean 'threads'?)",
        "spec.yaml:4:15: error: check.seed: expected int, got bool",
    ]


def test_yaml_syntax_error_has_position(write_spec: WriteSpec, registry: Registry) -> None:
    [msg] = errors(write_spec, registry, "design: fake\nconstants: {domains: 1\n")
    assert msg.startswith("spec.yaml:3:1: error: ")


def test_top_level_must_be_a_mapping(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, "- design\n") == ["spec.yaml:1:1: error: expected mapping, got list"]
    assert errors(write_spec, registry, "") == [
        "spec.yaml: error: empty spec: expected a mapping with at least 'design'"]


def test_missing_file(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(SpecError) as ei:
        load_spec(str(tmp_path / "x.yaml"), registry)
    assert str(ei.value) == f"error: {tmp_path / 'x.yaml'}: no such file"


def test_spec_errors_is_a_spec_error() -> None:
    e = SpecErrors([SpecError("f:1:2", "a", "m1"), SpecErrors([SpecError("f:3:4", "", "m2")])])
    assert isinstance(e, SpecError)
    assert e.lines() == ["f:1:2: error: a: m1", "f:3:4: error: m2"]


# ---------------------------------------------------------------- after loading


def test_locate_scenario_error_dotted_and_parent(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD)
    f = ld.path
    assert normalize_key("threads.0.run.1.apid") == "threads[0].run[1].apid"
    assert locate(ld, "threads.0.run.1.apid") == f"{f}:11:47"
    assert locate(ld, "threads[1].run[0].mdev") == f"{f}:15:9"  # defaulted arg -> its call
    assert locate(ld, "nowhere.at.all") == f"{f}:1:1"
    e = scenario_error(ld, ScenarioError("threads.1.run.0.apid", "adapter 3 is busy"))
    assert str(e) == f"{f}:15:38: error: threads[1].run[0].apid: adapter 3 is busy"


def test_property_names_checked_after_build(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD.replace("only: [deadlock]", "only: [deadlok]\n  skip: [data-race]"))
    with pytest.raises(SpecError) as ei:
        validate_property_names(ld, ["deadlock", "lock-order", "data-race"])
    assert str(ei.value) == (f"{ld.path}:17:10: error: properties.only[0]: unknown property 'deadlok' "
                             "(did you mean 'deadlock'?); known: deadlock, lock-order, data-race")
    validate_property_names(load(write_spec, registry, GOOD), ["deadlock"])  # no error


# ---------------------------------------------------------------- registry


def test_registry_unknown_and_duplicate(registry: Registry) -> None:
    assert registry.names() == ["broken", "fake"]
    with pytest.raises(SpecError, match=r"unknown design 'fkae' \(did you mean 'fake'\?\); known designs"):
        registry.get("fkae")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(type(registry.get("fake")))
    with pytest.raises(TypeError, match="not a Design"):
        Registry().register(object)


def test_optional_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _optional_module("no_such_pkg_apcheck.designs") is None
    pkg = tmp_path / "badpkg_apcheck"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "designs.py").write_text("import no_such_dependency_apcheck\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # the module exists but is broken: that is an internal error, not "not installed"
    with pytest.raises(InternalError, match="no_such_dependency_apcheck"):
        _optional_module("badpkg_apcheck.designs")


def test_required_constant_without_constants_section(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, "design: fake\n") == [
        "spec.yaml:1:1: error: constants: missing required constant 'domains'"]


# ---------------------------------------------------------------- prove: block


def test_prove_block_loaded(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD + "prove:\n  lemmas: [trivial]\n  k: 2\n  bmc: 0\n  timeout: 5\n")
    assert ld.prove == {"lemmas": ("trivial",), "k": 2, "bmc": 0, "timeout": 5.0}
    assert isinstance(ld.prove["timeout"], float)
    assert load(write_spec, registry, GOOD).prove == {}  # no prove: block
    assert load(write_spec, registry, GOOD + "prove:\n").prove == {}  # empty block


def test_prove_block_unknown_key_and_types(write_spec: WriteSpec, registry: Registry) -> None:
    assert errors(write_spec, registry, GOOD + "prove:\n  lemas: [x]\n  k: -1\n  bmc: 2.5\n  timeout: 0\n") == [
        "spec.yaml:23:3: error: prove.lemas: unknown option 'lemas' (did you mean 'lemmas'?)",
        "spec.yaml:24:6: error: prove.k: expected a non-negative int, got -1",
        "spec.yaml:25:8: error: prove.bmc: expected int, got float",
        "spec.yaml:26:12: error: prove.timeout: expected a positive finite number, got 0.0",
    ]
    assert errors(write_spec, registry, GOOD + "prove:\n  lemmas: [a, 3]\n  timeout: .nan\n") == [
        "spec.yaml:23:15: error: prove.lemmas[1]: expected str, got int",
        "spec.yaml:24:12: error: prove.timeout: expected a positive finite number, got nan",
    ]
    assert errors(write_spec, registry, GOOD + "prove: [k]\n") == [
        "spec.yaml:22:8: error: prove: expected mapping, got list"]
    assert errors(write_spec, registry, GOOD + "prove:\n  lemmas: one\n") == [
        "spec.yaml:23:11: error: prove.lemmas: expected a list of strings, got str"]
    assert errors(write_spec, registry, GOOD + "prover: {}\n") == [
        "spec.yaml:22:1: error: prover: unknown key 'prover' (did you mean 'prove'?)"]


def test_lemma_names_checked_after_build(write_spec: WriteSpec, registry: Registry) -> None:
    ld = load(write_spec, registry, GOOD + "prove:\n  lemmas: [trivial, trivail]\n")
    with pytest.raises(SpecError) as ei:
        validate_lemma_names(ld, ["trivial", "check:lock-order"])
    assert str(ei.value) == (f"{ld.path}:23:21: error: prove.lemmas[1]: unknown lemma 'trivail' "
                             "(did you mean 'trivial'?); known: trivial, check:lock-order")
    validate_lemma_names(load(write_spec, registry, GOOD), ["trivial"])  # no prove: block, no error
