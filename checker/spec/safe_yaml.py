"""Composing a YAML spec in bounded time and memory.

PyYAML's parser is iterative, but its composer recurses once per nesting level
(a RecursionError near 1,000 levels), and an alias is a shared node that the
spec loader would expand every time it is referenced: 230 bytes of nested
aliases ("billion laughs") expand to gigabytes. So, before the loader converts
anything:

- the events are parsed once, counting the nesting depth (``MAX_DEPTH``);
- the composed node graph is measured with aliases expanded, memoised per node
  (linear in the file), against ``MAX_VALUES``;
- every scalar (keys included) is checked for lone surrogates, which a
  double-quoted ``"\\ud800"`` escape produces and no output can encode.

Each limit gives ``file:line:col: error: ...`` at the offending node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from checker.lang.inputs import bad_character
from checker.spec.errors import SpecError

MAX_SPEC_BYTES = 128 << 10  # 128 KiB (pure-Python YAML: about a second): the largest bundled spec is 4 KiB
MAX_DEPTH = 64  # nesting of lists and mappings (a spec needs 5)
MAX_VALUES = 100_000  # scalars, lists and mappings with aliases expanded
MAX_THREADS = 64  # threads in a spec (the bundled specs have at most 4)
MAX_RUN = 64  # operations in one thread's run list


def compose(loader_class: Callable[[str], yaml.SafeLoader], text: str, filename: str) -> yaml.Node | None:
    """The composed document; SpecError past a limit; yaml.YAMLError for invalid YAML."""
    err = bad_character(text)
    if err is not None:  # PyYAML's reader would refuse it without a position
        raise SpecError(f"{filename}:{err.line}:{err.col}", "", err.message)
    _check_depth(loader_class, text, filename)
    loader = loader_class(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None:
        _check_values(node, filename)
    return node


def _at(filename: str, mark: Any) -> str:
    return f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark is not None else filename


def _check_depth(loader_class: Callable[[str], yaml.SafeLoader], text: str, filename: str) -> None:
    """Nesting depth from the event stream: libyaml's when present (20 times faster), else, or
    when libyaml stops on an error (it has its own depth limit), PyYAML's. A syntax error ends
    the pass; the composer then reports it with PyYAML's message and position."""
    if yaml.__with_libyaml__:
        try:
            _scan_depth(yaml.CBaseLoader(text), filename)
            return
        except yaml.YAMLError:
            pass
    try:
        _scan_depth(loader_class(text), filename)
    except yaml.YAMLError:
        pass


def _scan_depth(loader: Any, filename: str) -> None:
    depth = 0
    try:
        while loader.check_event():
            ev = loader.get_event()
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise SpecError(_at(filename, ev.start_mark), "",
                                    f"nesting deeper than {MAX_DEPTH} levels (the input limit)")
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    finally:
        loader.dispose()


def _check_values(root: yaml.Node, filename: str) -> None:
    """Expanded size of every node, children first, with an explicit stack (no recursion)."""
    size: dict[int, int] = {}
    visiting: set[int] = set()
    first_bad: tuple[tuple[int, int], SpecError] | None = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            err = bad_character(node.value) if isinstance(node.value, str) else None
            if err is not None:
                at = (node.start_mark.line, node.start_mark.column)
                if first_bad is None or at < first_bad[0]:  # report the first in the file
                    first_bad = (at, SpecError(_at(filename, node.start_mark), "",
                                               f"{err.message} (written as an escape)"))
            size[key] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if not expanded:
            if key in visiting:  # a recursive alias: the spec loader reports it
                continue
            visiting.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size and id(c) not in visiting)
            continue
        visiting.discard(key)
        total = 1 + sum(size.get(id(c), 1) for c in children)
        if total > MAX_VALUES:
            raise SpecError(_at(filename, node.start_mark), "",
                            f"more than {MAX_VALUES:,} values once aliases are expanded (the input limit)")
        size[key] = total
    if first_bad is not None:
        raise first_bad[1]
