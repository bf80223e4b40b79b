"""Issue 9: hostile input gets ``file:line:col: error: ...``, exit 2, in bounded time and memory.

A corpus of the cases that crashed (exit 4), hung or used gigabytes, and a Hypothesis
fuzzer over byte-level mutations of a valid spec that must never reach an internal error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.cli.cli import main
from checker.report.results import EXIT_INTERNAL, EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
LOCATED = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): error: ")


def alias_bomb(levels: int = 9) -> str:
    """230-odd bytes that expand to 9**9 strings ("billion laughs")."""
    text = 'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        text += f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    return text + "design: v17\n"


SPEC_CASES: dict[str, tuple[bytes, str]] = {
    # name: (spec bytes, expected "line:col: error: message")
    "deep-flow-nesting": (b"design: v17\nconstants: " + b"[" * 3000 + b"]" * 3000 + b"\n",
                          "2:75: error: nesting deeper than 64 levels (the input limit)"),
    "deep-block-nesting": (b"design: v17\nx:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 100)),
                           "66:129: error: nesting deeper than 64 levels (the input limit)"),
    "alias-bomb": (alias_bomb().encode(), "6:5: error: more than 100,000 values once aliases are expanded "
                                          "(the input limit)"),
    "nul-byte": (b"design: v17\x00\n", "1:12: error: control character U+0000 is not allowed"),
    "bell-in-a-string": (b'design: v17\nname: "a\x07b"\n', "2:9: error: control character U+0007 is not allowed"),
    "escape-to-control": (b'design: v17\nname: "a\\x01b"\n',
                          "2:7: error: control character U+0001 is not allowed (written as an escape)"),
    "not-utf8": (b"design: v17\nname: caf\xe9\n", "2:10: error: not UTF-8 text (invalid continuation byte: byte 0xe9)"),
    "lone-surrogate-name": (b'design: v17\nname: "\\ud800"\n',
                            "2:7: error: lone surrogate U+D800 is not allowed (written as an escape)"),
    "lone-surrogate-thread": (b'design: v17\nthreads:\n  - name: "t\\udc00"\n    run: [close_vm_fd]\n',
                              "3:11: error: lone surrogate U+DC00 is not allowed (written as an escape)"),
    "too-large": (b"design: v17\n" + b"#" * (200 << 10) + b"\n",
                  "1:1: error: spec larger than 131,072 bytes (the input limit; see README, 'Input limits')"),
    "too-many-threads": (b"design: v17\nthreads:\n" + b"".join(
        f"  - name: t{i}\n    run: [close_vm_fd]\n".encode() for i in range(65)),
        "3:3: error: threads: more than 64 threads (the input limit)"),
    "python-tag": (b"design: !!python/object/apply:os.system ['true']\n",
                   "1:9: error: design: tag '!!python/object/apply:os.system' is not allowed: a spec is plain data "
                   "(strings, numbers, booleans, null, lists and mappings)"),
}


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, err


@pytest.mark.parametrize("name", sorted(SPEC_CASES))
def test_hostile_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    data, expected = SPEC_CASES[name]
    p = tmp_path / "spec.yaml"
    p.write_bytes(data)
    code, err = run(capsys, ["check", str(p)])
    assert (code, err.splitlines()[0]) == (EXIT_USAGE, f"{p}:{expected}")


def test_spec_from_dev_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "zero.yaml"
    p.symlink_to("/dev/zero")
    code, err = run(capsys, ["validate", str(p)])
    assert (code, err) == (EXIT_USAGE, f"{p}:1:1: error: spec larger than 131,072 bytes "
                                       "(the input limit; see README, 'Input limits')\n")


def lock_model(n_threads: int = 1, step: object = ("acq", "x")) -> dict[str, object]:
    return {"locks": ["x"], "threads": [{"name": f"t{i}", "program": [list(step) if isinstance(step, tuple) else step]}
                                        for i in range(n_threads)]}


LOCK_CASES: dict[str, tuple[bytes | None, str]] = {
    "lock-name-is-a-list": (json.dumps(lock_model(step=["acq", ["x"]])).encode(),
                            'threads[0].program[0]: expected ["acq"|"rel", LOCK]'),
    "step-is-a-string": (json.dumps(lock_model(step="acq")).encode(),
                         'threads[0].program[0]: expected ["acq"|"rel", LOCK]'),
    "twenty-thousand-threads": (json.dumps(lock_model(20000)).encode(), "more than 64 threads (the input limit)"),
    "deep-json": (b"[" * 100000 + b"]" * 100000, "{json}:1:1: JSON nested too deeply (the input limit)"),
    "lone-surrogate": (b'{"locks": ["\\ud800"], "threads": []}', "locks[0]: lone surrogate U+D800 is not allowed"),
    "not-utf8": (b'{"locks": ["\xff"]}', "{json}:1:13: not UTF-8 text (invalid start byte: byte 0xff)"),
    "nul-byte": (b'{"locks": []}\x00', "{json}:1:14: control character U+0000 is not allowed"),
    "thread-name-not-a-string": (json.dumps({"locks": ["x"], "threads": [{"name": 3, "program": [["acq", "x"]]}]})
                                 .encode(), "threads[0].name: expected a non-empty string"),
    "dev-zero": (None, "{json}:1:1: lock program larger than 4,194,304 bytes (the input limit; see README, "
                       "'Input limits')"),
}


@pytest.mark.parametrize("name", sorted(LOCK_CASES))
def test_hostile_lock_program(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    data, expected = LOCK_CASES[name]
    prog = tmp_path / "model.json"
    if data is None:
        prog.symlink_to("/dev/zero")
    else:
        prog.write_bytes(data)
    spec = tmp_path / "spec.yaml"
    spec.write_text("design: lock-program\nprogram: model.json\n", encoding="utf-8")
    code, err = run(capsys, ["check", str(spec)])
    assert (code, err) == (EXIT_USAGE, f"{spec}:2:10: error: constants.program: "
                                       + expected.replace("{json}", str(prog)) + "\n")


# ------------------------------------------------------------------ fuzzing


VALID = (ROOT / "specs" / "v17-hotplug.yaml").read_bytes()
MUTATION = st.tuples(st.integers(0, len(VALID)), st.integers(0, 8),
                     st.binary(max_size=12) | st.sampled_from(
                         [b"&a ", b"*a", b"[", b"{", b"!!python/name:os.system", b"\x00", b"\xff", b'"\\ud800"',
                          b"<<: *a", b": ", b"\n- ", b".nan", b"-1", b"0", b"[]", b"\t", b"~", b"\xef\xbb\xbf"]))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzzed_specs_never_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  edits: list[tuple[int, int, bytes]]) -> None:
    data = VALID
    for at, cut, insert in edits:
        at = min(at, len(data))
        data = data[:at] + insert + data[at + cut:]
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(data)
    code, err = run(capsys, ["validate", str(p)])
    assert code != EXIT_INTERNAL, err
    if code == EXIT_USAGE:  # every error line is located in the spec (or names the file)
        for line in err.splitlines():
            assert line.startswith(str(p)) or line.startswith("Usage:") or line.startswith("Try") \
                or line.startswith("Error:") or line == "", line
