"""Every YAML snippet in README.md and docs/ is a spec that loads and builds (issue 10, point 7).

A ```yaml block is checked as a whole spec, by the same loader, build and name
checks as ``apcheck validate`` (and ``apcheck prove``'s lemma names). Two
markers, an HTML comment on the line before the block, say how to read it:

- ``<!-- spec-file: examples/phil_N3.yaml -->``: read it as that file (relative
  paths in the snippet resolve from there);
- ``<!-- spec-fragment: specs/final-mixed.yaml -->``: the snippet shows a few
  top-level keys; they replace those of that spec, and the result must load.

A block that is not tagged ``yaml`` but looks like a spec (a ``design:`` line)
fails the test too, so a spec cannot dodge the check by losing its tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from checker.cli.cli import known_properties
from checker.cli.prove_cli import goals_of
from checker.search.run import build_program
from checker.spec.registry import default_registry
from checker.spec.spec import parse_spec, validate_lemma_names, validate_property_names
from checker.spec.userprops import add_user_properties

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MARKER = re.compile(r"<!--\s*spec-(file|fragment):\s*(\S+)\s*-->\s*$")


@dataclass
class Snippet:
    doc: Path
    line: int
    text: str
    marker: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def snippets(tag: str | None) -> list[Snippet]:
    """Fenced blocks tagged ``tag`` (None: every untagged block)."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if (m.group(1) or None) != tag:
                continue
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mk = MARKER.search(before)
            out.append(Snippet(doc, line, m.group(2), (mk.group(1), mk.group(2)) if mk else None))
    return out


YAML_SNIPPETS = snippets("yaml")


def spec_text(s: Snippet) -> tuple[str, str]:
    """(text, file name to load it as)."""
    if s.marker is None:
        return s.text, str(s.doc.parent / f"snippet-line-{s.line}.yaml")
    kind, target = s.marker
    path = ROOT / target
    if kind == "file":
        return s.text, str(path)
    base = yaml.safe_load(path.read_text(encoding="utf-8"))
    base.update(yaml.safe_load(s.text))
    return yaml.safe_dump(base, sort_keys=False), str(path)


def test_there_are_snippets_to_check() -> None:
    assert len(YAML_SNIPPETS) >= 3
    assert {s.marker[0] for s in YAML_SNIPPETS if s.marker} == {"file", "fragment"}


@pytest.mark.parametrize("snippet", YAML_SNIPPETS, ids=[s.id for s in YAML_SNIPPETS])
def test_yaml_snippet_is_a_valid_spec(snippet: Snippet) -> None:
    text, name = spec_text(snippet)
    loaded = parse_spec(text, name, default_registry())  # raises SpecError(s) with positions
    program = build_program(loaded.design, loaded.scenario)
    add_user_properties(loaded, program)
    validate_property_names(loaded, known_properties(program))
    if getattr(loaded, "prove", None):
        validate_lemma_names(loaded, list(goals_of(program)))


def test_untagged_blocks_are_not_specs() -> None:
    looks_like_spec = [s.id for s in snippets(None) if re.search(r"^design:\s*\S", s.text, re.M)]
    assert looks_like_spec == []


def test_the_check_catches_a_broken_snippet() -> None:
    from checker.spec.errors import SpecError

    broken = Snippet(ROOT / "docs/spec-format.md", 1, "design: v15\nthreads:\n  - name: a\n    run: [handle_pqap]\n",
                     None)
    text, name = spec_text(broken)
    with pytest.raises(SpecError, match="unknown operation 'handle_pqap'"):
        parse_spec(text, name, default_registry())


def test_readme_first_run_is_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's example output comes from a real run: every line of it, in order ("..." skips)."""
    from checker.cli.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## A first run\n\n```\n", 1)[1].split("```", 1)[0].splitlines()
    command = block[0].removeprefix("$ apcheck ").split()
    assert command[:2] == ["check", "specs/v15-lockdep.yaml"]
    main([command[0], str(ROOT / command[1]), *command[2:]])
    real = capsys.readouterr().out.replace(str(ROOT / command[1]), command[1]).splitlines()
    at = 0
    for line in block[1:]:
        if line == "...":
            continue
        assert line in real[at:], f"README line not in the real output (in order): {line!r}"
        at = real.index(line, at) + 1
