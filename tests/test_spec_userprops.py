"""User always/sometimes properties in a spec: a small expression language (issue 10, point 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.lang.layout import bool_field, enum_field, int_field, mask_field, ref_field
from checker.search.pycompile import evaluate
from checker.spec.userprops import ExprSyntaxError, compile_property, parse

HEAD = """\
design: v15
constants:
  adapters: [3, 4]
  domains: [5]
  matrix: ["mdev0: 3 x 5"]
  attached: ["mdev0 -> kvm0"]
threads:
  - name: admin
    run: [{assign_adapter: {apid: 4}}]
properties:
"""

F = {f.name: f for f in [
    mask_field("kvm0.crycb.apm", 2), mask_field("mdev0.matrix.apm", 2),
    enum_field("kvm0.state", ("unborn", "alive", "freed"), "alive"),
    ref_field("mdev0.kvm", ("kvm0", "kvm1")), int_field("kvm0.refs", 0, 3), bool_field("vfio_ap.loaded"),
    bool_field("ap_queue[04.0005].reset"), bool_field("kvm0->arch.crypto.apie"),
]}


def holds(text: str, **values: int) -> bool:
    env = {F[k.replace("__", ".")]: v for k, v in values.items()}
    return bool(evaluate(compile_property(text, F), {**{f: f.init for f in F.values()}, **env}))


def test_language_meaning() -> None:
    assert holds("kvm0.state == alive && mdev0.kvm == NULL && kvm0.refs == 0 && !vfio_ap.loaded")
    assert holds("kvm0.crycb.apm & ~mdev0.matrix.apm == {}")
    assert not holds("kvm0.crycb.apm == {0, 1}")
    assert holds("kvm0.refs + 1 >= 1 => kvm0.state != freed")
    assert holds("not (1 in kvm0.crycb.apm) or false")
    assert holds("`ap_queue[04.0005].reset` == false && ap_queue[04.0005].reset == false")
    assert holds("!kvm0->arch.crypto.apie")
    assert holds("0x0 == kvm0.refs")


@pytest.mark.parametrize(("text", "offset", "message"), [
    ("kvm0.state == alive &&", 22, "expected a value, got end of expression"),
    ("kvm0.stat == alive", 0, "unknown state field 'kvm0.stat' (did you mean 'kvm0.state'?)"),
    ("kvm0.state == alvie", 14,
     "kvm0.state is never 'alvie' (did you mean 'alive'?); its values: unborn, alive, freed"),
    ("kvm0.refs", 0, "expected a condition, got a value of type int"),
    ("kvm0.refs == true", 10, "type error: comparing int with bool"),
    ("mdev0.matrix.apm == {5}", 20, "5 is not an element of mdev0.matrix.apm (elements: 0, 1)"),
    ("kvm0.refs < 1 < 2", 14, "comparisons do not chain; use && between them"),
    ("__import__('os').system('true')", 11, "unexpected character \"'\""),
    ("kvm0.refs == NULL", 13, "NULL compares only with a pointer field"),
])
def test_errors_carry_the_column(text: str, offset: int, message: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        compile_property(text, F)
    assert (info.value.offset, info.value.message) == (offset, message)


def test_parse_is_syntax_only() -> None:
    tree = parse("a.b == c && !(d)")
    assert tree.kind == "bin" and tree.value == "&&"


def run(tmp_path: Path, body: str, *args: str) -> int:
    spec = tmp_path / "s.yaml"
    spec.write_text(HEAD + body, encoding="utf-8")
    return main(["check", str(spec), "--quiet", *args])


def test_user_properties_are_checked_like_the_designs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(tmp_path, """\
  only: [guest-sees-only-assigned, crycb-unchanged, guest-gets-adapter-4]
  always:
    - name: guest-sees-only-assigned
      expr: "kvm0.crycb.apm & ~mdev0.matrix.apm == {}"
    - name: crycb-unchanged
      expr: kvm0.crycb.apm == {3}
      description: the guest's APM never changes
  sometimes:
    - name: guest-gets-adapter-4
      expr: "4 in kvm0.crycb.apm && mdev0.kvm == kvm0"
""")
    out = capsys.readouterr().out
    assert rc == 1
    names = ("crycb-unchanged", "guest-sees-only-assigned", "guest-gets-adapter-4")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(names)}
    assert rows == {"crycb-unchanged": "VIOLATED", "guest-sees-only-assigned": "HOLDS",
                    "guest-gets-adapter-4": "WITNESSED"}
    assert "== crycb-unchanged: invariant violated ==" in out


def test_spec_errors_at_the_column_inside_the_string(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(tmp_path, """\
  always:
    - name: a
      expr: "kvm0.crycb.apm == {} &&"
    - name: b
      expr: kvm0.stat == alive
    - name: deadlock
      expr: "true"
""", "--only", "deadlock")
    assert rc == 2
    spec = tmp_path / "s.yaml"
    err = capsys.readouterr().err.splitlines()
    # syntax errors come at load time, with every other load error
    assert err == [f"{spec}:13:37: error: properties.always[0].expr: expected a value, got end of expression"]
    spec.write_text(spec.read_text(encoding="utf-8").replace(" &&\"", "\""), encoding="utf-8")
    assert main(["check", str(spec), "--quiet"]) == 2
    # name errors after building, all at once
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:15:13: error: properties.always[1].expr: unknown state field 'kvm0.stat' "
        "(did you mean 'kvm0.state'?)",
        f"{spec}:16:13: error: properties.always[2].name: property 'deadlock' is already defined by apcheck (built-in)",
    ]
