"""apcheck prove --engine spacer: invariants found by Z3's CHC engine count only after the
induction engine re-checks them; --save-lemmas writes them into the spec (still valid YAML,
comments kept); --no-lemmas ignores the spec's lemmas; a timeout keeps the hand lemmas.

About 10 s in all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
import z3
from test_prove import mutex_program, twin_counter

from checker.cli.cli import main
from checker.prove import spacer
from checker.prove.lemmafile import HEADER, with_found
from checker.prove.prove import CTI, PROVED, UNKNOWN, VIOLATED, prove_program
from checker.prove.spacer import SpacerOutcome, parse_found

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_spacer_proves_what_induction_cannot_and_finds_violations() -> None:
    prog = mutex_program()
    assert prove_program(prog, ["mutex"]).by_name()["mutex"].status == CTI  # not inductive alone
    res = prove_program(prog, ["mutex"], engine="spacer")
    p = res.by_name()["mutex"]
    assert p.status == PROVED and p.detail.startswith("Spacer invariant (")
    assert p.lemmas == ["spacer[mutex]"]  # the invariant was re-checked as a lemma of the goal
    assert len(res.found) == 1 and res.found[0].startswith("; mutex\n")
    twin = prove_program(twin_counter(), ["x_not_2", "same"], engine="spacer").by_name()
    assert twin["x_not_2"].status == VIOLATED and twin["x_not_2"].trace is not None
    assert len(twin["x_not_2"].trace) == 2  # x = 0, 1, 2: the explicit engine's shortest trace
    assert twin["same"].status == PROVED


def test_a_wrong_invariant_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spacer's answer is re-checked: neither 'true' nor 'cs0 or not cs0' is inductive with mutex."""
    def wrong(*_: object) -> SpacerOutcome:
        cs0 = z3.Bool("cs0")
        return SpacerOutcome("proved", [z3.BoolVal(True), z3.Or(cs0, z3.Not(cs0))], 0.0)

    monkeypatch.setattr(spacer, "spacer_invariant", wrong)
    res = prove_program(mutex_program(), ["mutex"], engine="spacer")
    p = res.by_name()["mutex"]
    assert p.status == CTI and p.detail.startswith("Spacer's invariant failed the re-check (CTI: ")
    assert res.found == []


def test_timeout_keeps_the_hand_lemmas(monkeypatch: pytest.MonkeyPatch) -> None:
    def timeout(*_: object) -> SpacerOutcome:
        return SpacerOutcome("unknown", [], 30.0, "timeout")

    monkeypatch.setattr(spacer, "spacer_invariant", timeout)
    hand = prove_program(mutex_program(), ["mutex"], ["held0", "held1", "csat0", "csat1"], engine="spacer")
    p = hand.by_name()["mutex"]
    assert p.status == PROVED and p.detail.startswith("Spacer timed out or gave up (30.0 s: timeout); hand lemmas: ")
    alone = prove_program(mutex_program(), ["mutex"], engine="spacer").by_name()["mutex"]
    assert alone.status == UNKNOWN and alone.detail == "Spacer timed out or gave up (30.0 s: timeout); no hand lemmas"


def test_with_found_keeps_comments_and_replaces_the_old_entry() -> None:
    src = "name: x\nprove:\n  # why\n  lemmas: [a]\n  found:\n    - |\n      ; old\n      true\n  k: 1\n\nthreads: []\n"
    out = with_found(src, ["; g\n(and a\n     b)\n"])
    assert out == ("name: x\nprove:\n  # why\n  lemmas: [a]\n  k: 1\n  " + HEADER +
                   "\n    - |\n      ; g\n      (and a\n           b)\n\nthreads: []\n")
    assert yaml.safe_load(out)["prove"]["found"] == ["; g\n(and a\n     b)\n"]
    assert with_found("name: x\n", ["; g\ntrue\n"]) == f"name: x\nprove:\n  {HEADER}\n    - |\n      ; g\n      true\n"


def test_save_lemmas_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "hotplug.yaml"
    spec.write_text(with_found((SPECS / "final-hotplug.yaml").read_text(), []))  # without the spec's own found
    goals = ["--property", "hook-safe", "--property", "one-mdev-per-kvm"]
    assert main(["prove", str(spec), "--engine", "spacer", "--no-lemmas", "--save-lemmas", *goals]) == 0
    assert f"{spec}: prove.found: 2 invariants saved" in capsys.readouterr().err
    text = spec.read_text()
    assert "# auxiliary invariants" in text  # the author's comments stay
    block = yaml.safe_load(text)["prove"]
    assert [t.split("\n")[0] for t in block["found"]] == ["; hook-safe", "; one-mdev-per-kvm"]
    assert main(["validate", str(spec)]) == 0
    # the induction engine re-proves each goal with its saved invariant (and no hand lemma)
    spec.write_text(text.replace("  lemmas: [", "  lemmas: []\n  unused: [").split("  unused: [")[0]
                    + text[text.index("  found:"):])
    capsys.readouterr()
    assert main(["prove", str(spec), *goals, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert [(r["property"], r["status"], r["lemmas"]) for r in rows] == [
        ("hook-safe", "PROVED", ["found[hook-safe]"]), ("one-mdev-per-kvm", "PROVED", ["found[one-mdev-per-kvm]"])]


def test_parse_found_errors_are_spec_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    text = with_found((SPECS / "final-lockdep.yaml").read_text(), ["; hook-safe\n(and nope)\n"])
    spec.write_text(text)
    assert main(["prove", str(spec), "--property", "hook-safe"]) == 2
    err = capsys.readouterr().err
    assert "prove.found: found[0]: not an SMT-LIB formula over this program's fields" in err
    with pytest.raises(ValueError, match="starts with a '; GOAL' line"):
        parse_found([], "(and a)")
