"""CLI behaviour that needs no search: validate, designs, error reporting and exit codes.

The fake design reaches the CLI through ``main(argv, registry=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from checker.cli.cli import main, resolve_options
from checker.report.results import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
from checker.spec.errors import SpecError
from checker.spec.registry import Registry
from checker.spec.spec import load_spec

WriteSpec = Callable[..., Path]
SPEC = """\
design: fake
constants: {domains: 1, adapters: [3]}
threads:
  - name: vcpu0
    run: [handle_pqap]
  - name: admin
    run:
      - assign_adapter_store: {apid: 3}
"""

pytestmark = pytest.mark.usefixtures("engine_run")


def run(capsys: pytest.CaptureFixture[str], argv: list[str], registry: Registry) -> tuple[int, str, str]:
    code = main(argv, registry=registry)
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_ok(capsys: pytest.CaptureFixture[str], registry: Registry, write_spec: WriteSpec) -> None:
    p = write_spec(SPEC)
    code, out, err = run(capsys, ["validate", str(p)], registry)
    # 2 threads x (lock + unlock); bits: one mutex owner (0..2 -> 2 bits) + two pcs (0..2 -> 2 bits each)
    assert (code, out, err) == (EXIT_OK, f"{p}: ok (design fake, 2 threads, 4 actions, 6 state bits)\n", "")


def test_validate_spec_error_exit_2(capsys: pytest.CaptureFixture[str], registry: Registry,
                                    write_spec: WriteSpec) -> None:
    p = write_spec(SPEC.replace("design: fake", "desing: fake"))
    code, out, err = run(capsys, ["validate", str(p)], registry)
    assert (code, out) == (EXIT_USAGE, "")
    assert err == f"{p}:1:1: error: desing: unknown key 'desing' (did you mean 'design'?)\n"


def test_validate_scenario_error_is_located(capsys: pytest.CaptureFixture[str], registry: Registry,
                                            write_spec: WriteSpec) -> None:
    p = write_spec(SPEC.replace("{apid: 3}", "{apid: 5}"))
    code, _, err = run(capsys, ["validate", str(p)], registry)
    assert code == EXIT_USAGE
    assert err == f"{p}:8:38: error: threads[1].run[0].apid: adapter 5 is not in constants.adapters\n"


def test_validate_unknown_property(capsys: pytest.CaptureFixture[str], registry: Registry,
                                   write_spec: WriteSpec) -> None:
    p = write_spec(SPEC + "properties: {skip: [trivail]}\n")
    code, _, err = run(capsys, ["validate", str(p)], registry)
    assert code == EXIT_USAGE
    assert err.startswith(f"{p}:9:21: error: properties.skip[0]: unknown property 'trivail' "
                          "(did you mean 'trivial'?); known: trivial, deadlock, ")


def test_missing_spec_file(capsys: pytest.CaptureFixture[str], registry: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = run(capsys, ["validate", str(missing)], registry)
    assert (code, out, err) == (EXIT_USAGE, "", f"error: {missing}: no such file\n")


def test_designs_table(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    code, out, _ = run(capsys, ["designs"], registry)
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["design", "summary"]
    assert lines[2].split(None, 1) == ["broken", "crashes in build"]
    assert lines[3].split(None, 1) == ["fake", "a fake design for tests"]


def test_designs_detail_and_unknown(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    code, out, _ = run(capsys, ["designs", "fake"], registry)
    assert code == EXIT_OK
    assert "assign_adapter_store(mdev: int = 0, apid: int)  sysfs assign_adapter" in out
    code, _, err = run(capsys, ["designs", "fkae"], registry)
    assert code == EXIT_USAGE
    assert err.startswith("error: design: unknown design 'fkae' (did you mean 'fake'?)")


@pytest.mark.parametrize("argv", [["nonsense"], ["validate"], ["check", "x.yaml", "--strategy", "bsf"],
                                  ["validate", "a.yaml", "--bogus"]])
def test_click_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], registry: Registry, argv: list[str]) -> None:
    code, _, err = run(capsys, argv, registry)
    assert code == EXIT_USAGE
    assert "Error" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    code, out, _ = run(capsys, ["--version"], registry)
    assert code == EXIT_OK and out.startswith("apcheck, version ")
    code, out, _ = run(capsys, ["--help"], registry)
    assert code == EXIT_OK
    for cmd in ("check", "validate", "replay", "designs", "graph"):
        assert cmd in out


def test_internal_error_exit_4(capsys: pytest.CaptureFixture[str], registry: Registry, write_spec: WriteSpec,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCHECK_DEBUG", raising=False)
    p = write_spec(SPEC.replace("design: fake", "design: broken"))
    code, out, err = run(capsys, ["validate", str(p)], registry)
    assert (code, out) == (EXIT_INTERNAL, "")
    assert err == ("apcheck: internal error: RuntimeError: boom\n"
                   "please report this at the apcheck issue tracker with the spec and command line\n")
    monkeypatch.setenv("APCHECK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["validate", str(p)], registry=registry)


def test_options_resolve_cli_over_spec_over_defaults(registry: Registry, write_spec: WriteSpec) -> None:
    p = write_spec(SPEC + "check: {strategy: dfs, max_states: 10, exact: true}\nproperties: {only: [deadlock]}\n")
    ld = load_spec(str(p), registry)
    program = ld.design.build(ld.scenario)
    # what click passes when only --strategy and --skip are given
    o = resolve_options(ld, program, strategy="random", max_states=None, exact=None, timeout=None,
                        only=(), skip=("data-race",), quiet=None)
    assert (o.strategy, o.max_states, o.exact, o.timeout) == ("random", 10, True, None)
    assert (o.properties, o.skip, o.quiet) == (("deadlock",), ("data-race",), False)
    with pytest.raises(SpecError, match=r"^error: --only: unknown property 'dedlock' \(did you mean 'deadlock'\?\)"):
        resolve_options(ld, program, only=("dedlock",))
