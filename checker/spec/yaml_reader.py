"""The YAML half of spec loading: plain data with positions, checked without executing anything.

PyYAML only parses and composes here (nodes with positions); values are built
from the YAML 1.2 core schema (str, int, float, bool, null, lists, mappings).
Any other tag, ``!!python/...`` included, is an error, so no spec can
instantiate an object. ``YamlReader`` turns nodes into ``Located`` values and
checks shapes and ``Param`` types, recording each error with ``file:line:col``
and its dotted path; ``checker.spec.spec`` builds the spec schema on it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from checker.lang.design import Param
from checker.spec import safe_yaml
from checker.spec.errors import SpecError, closest, did_you_mean

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MAP, SEQ = (_T + s for s in ("str", "int", "float", "bool", "null", "map", "seq"))

_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class CoreLoader(yaml.SafeLoader):
    """SafeLoader resolving plain scalars by the YAML 1.2 core schema.

    YAML 1.1 (PyYAML's default) reads ``no`` as false, ``1:20`` as 80 and
    ``2024-01-01`` as a date; in a spec those are strings. Only the parser and
    composer of this class are used, never its constructor.
    """


CoreLoader.yaml_implicit_resolvers = {}  # drop the YAML 1.1 resolvers inherited from SafeLoader
for _tag, _re, _first in ((NULL, _NULL_RE, "~nN"), (BOOL, _BOOL_RE, "tTfF"), (INT, _INT_RE, "-+0123456789"),
                          (FLOAT, _FLOAT_RE, "-+0123456789.")):
    CoreLoader.add_implicit_resolver(_tag, _re, list(_first))
CoreLoader.add_implicit_resolver(NULL, _NULL_RE, [""])


INVALID = object()  # a value already reported as an error; validators skip it silently


@dataclass
class Located:
    """A composed YAML value with the position of the value and of its key."""

    value: Any  # dict[str, Located] | list[Located] | scalar | INVALID
    line: int  # 1-based
    col: int
    kline: int = 0
    kcol: int = 0


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, dict):
        return "mapping"
    return {int: "int", float: "float", str: "str", list: "list"}.get(type(v), type(v).__name__)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


class YamlReader:
    """Composes a YAML document into located values and checks their shapes and types, collecting every
    error (the spec loader adds the schema)."""

    def __init__(self, filename: str) -> None:
        self.file = filename
        self.base = os.path.dirname(filename)
        self.errors: list[SpecError] = []
        self.where: dict[str, str] = {}
        self.written: dict[str, str] = {}  # dotted path -> an int scalar's text where its value drops the notation

    # ------------------------------------------------------------ helpers

    def at(self, line: int, col: int) -> str:
        return f"{self.file}:{line}:{col}"

    def err(self, y: Located | None, path: str, msg: str, key: bool = False) -> None:
        if y is None:
            where = self.file
        elif key and y.kline:
            where = self.at(y.kline, y.kcol)
        else:
            where = self.at(y.line, y.col)
        self.errors.append(SpecError(where, path, msg))

    def mark(self, y: Located, path: str, key: bool = False) -> None:
        self.where[path] = self.at(y.kline, y.kcol) if key and y.kline else self.at(y.line, y.col)

    # ------------------------------------------------------------ composing

    def compose(self, text: str) -> Located | None:
        try:  # bounded depth, alias expansion and characters (safe_yaml)
            node = safe_yaml.compose(CoreLoader, text, self.file)
        except SpecError as e:
            self.errors.append(e)
            return None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = self.at(mark.line + 1, mark.column + 1) if mark else self.file
            msg = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
            self.errors.append(SpecError(where, "", msg))
            return None
        except yaml.YAMLError as e:
            self.errors.append(SpecError(self.file, "", f"invalid YAML: {e}"))
            return None
        return None if node is None else self.convert(node, "", set())

    def convert(self, node: yaml.Node, path: str, stack: set[int]) -> Located:
        y = Located(INVALID, node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in stack:  # &a [*a]
            self.err(y, path, "recursive alias")
            return y
        if isinstance(node, yaml.ScalarNode):
            y.value = self.scalar(node, y, path)
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != SEQ:
                self.err(y, path, self.bad_tag(node.tag))
                return y
            stack.add(id(node))
            y.value = [self.convert(n, f"{path}[{i}]", stack) for i, n in enumerate(node.value)]
            stack.discard(id(node))
        elif isinstance(node, yaml.MappingNode):
            if node.tag != MAP:
                self.err(y, path, self.bad_tag(node.tag))
                return y
            stack.add(id(node))
            y.value = self.mapping(node, path, stack)
            stack.discard(id(node))
        return y

    def mapping(self, node: yaml.MappingNode, path: str, stack: set[int]) -> dict[str, Located]:
        out: dict[str, Located] = {}
        for knode, vnode in node.value:
            kl, kc = knode.start_mark.line + 1, knode.start_mark.column + 1
            ky = Located(INVALID, kl, kc)
            if knode.tag == _T + "merge":
                self.err(ky, path, "merge keys ('<<') are not supported; repeat the keys")
                continue
            if not isinstance(knode, yaml.ScalarNode) or knode.tag != STR:
                scalar = isinstance(knode, yaml.ScalarNode)
                shown = type_name(self.scalar(knode, ky, path)) if scalar else "a collection"
                self.err(ky, path, f"mapping keys must be strings, got {shown}")
                continue
            key = knode.value
            sub = f"{path}.{key}" if path else key
            if key in out:
                first = out[key]
                self.err(ky, sub, f"duplicate key {key!r} (first at line {first.kline}, column {first.kcol})")
                continue
            vy = self.convert(vnode, sub, stack)
            vy.kline, vy.kcol = kl, kc
            out[key] = vy
        return out

    def bad_tag(self, tag: str) -> str:
        return (f"tag {_short_tag(tag)!r} is not allowed: a spec is plain data "
                "(strings, numbers, booleans, null, lists and mappings)")

    def scalar(self, node: yaml.ScalarNode, y: Located, path: str) -> Any:
        tag, v = node.tag, node.value
        ok: Any = INVALID
        if tag == STR:
            ok = v
        elif tag == NULL and _NULL_RE.match(v):
            ok = None
        elif tag == BOOL and _BOOL_RE.match(v):
            ok = v.lower() == "true"
        elif tag == INT and _INT_RE.match(v):
            ok = int(v, 0) if v.startswith(("0o", "0x")) else int(v, 10)  # base 0 would reject "017"
            if v.startswith(("0o", "0x")):  # a design may show the value as written (sysfs masks in hex)
                self.written[path] = v
        elif tag == FLOAT and _FLOAT_RE.match(v):
            low = v.lower()
            ok = math.nan if low == ".nan" else (-math.inf if low.startswith("-") else math.inf) if "inf" in low \
                else float(v)
        elif tag in (NULL, BOOL, INT, FLOAT):
            self.err(y, path, f"invalid {_short_tag(tag)} value {v!r}")
        else:
            self.err(y, path, self.bad_tag(tag))
        return ok

    # ------------------------------------------------------------ shapes

    def as_map(self, y: Located | None, path: str, empty_ok: bool = True) -> dict[str, Located] | None:
        if y is None or y.value is INVALID:
            return None
        if path:
            self.mark(y, path)
        if y.value is None and empty_ok:
            return {}
        if not isinstance(y.value, dict):
            self.err(y, path, f"expected mapping, got {type_name(y.value)}")
            return None
        return y.value

    def as_list(self, y: Located | None, path: str) -> list[Located] | None:
        if y is None or y.value is INVALID:
            return None
        self.mark(y, path)
        if y.value is None:
            return []
        if not isinstance(y.value, list):
            self.err(y, path, f"expected list, got {type_name(y.value)}")
            return None
        return y.value

    def keys(self, m: dict[str, Located], parent: Located | None, path: str, known: tuple[str, ...] | list[str],
             required: tuple[str, ...] = (), what: str = "key") -> None:
        suggested: set[str] = set()
        for k, v in m.items():
            if k not in known:
                c = closest(k, known)
                if c is not None:
                    suggested.add(c)
                self.err(v, f"{path}.{k}" if path else k, f"unknown {what} {k!r}{did_you_mean(k, known)}", key=True)
        for k in required:
            if k not in m and k not in suggested:  # a typo of k is already reported
                self.err(parent, path, f"missing required {what} {k!r}")

    def typed(self, y: Located, typ: str, path: str) -> Any:
        """Check ``y`` against a Param type string; return the value or INVALID."""
        v = y.value
        if v is INVALID:
            return INVALID
        self.mark(y, path)
        bad = INVALID
        if typ == "int":
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        elif typ == "bool":
            if isinstance(v, bool):
                return v
        elif typ == "str":
            if isinstance(v, str):
                return v
        elif typ == "number":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
        elif typ in ("ints", "strs"):
            if not isinstance(v, list):
                self.err(y, path, f"expected a list of {'ints' if typ == 'ints' else 'strings'}, got {type_name(v)}")
                return bad
            items = [self.typed(e, typ[:-1], f"{path}[{i}]") for i, e in enumerate(v)]
            return bad if any(i is INVALID for i in items) else items
        elif typ == "path":
            if isinstance(v, str):
                resolved = os.path.normpath(os.path.join(self.base, v))
                if not os.path.exists(resolved):
                    self.err(y, path, f"no such file: {v!r} (looked for {resolved})")
                    return bad
                return resolved
            typ = "str (a file path)"
        elif typ.startswith("one of:"):
            choices = [c.strip() for c in typ[len("one of:"):].split("|")]
            shown = "|".join(choices)
            if isinstance(v, str) and v in choices:
                return v
            got = repr(v) if isinstance(v, str) else type_name(v)
            hint = did_you_mean(v, choices) if isinstance(v, str) else ""
            self.err(y, path, f"expected one of {shown}, got {got}{hint}")
            return bad
        else:
            raise TypeError(f"unknown parameter type {typ!r} (design bug)")
        self.err(y, path, f"expected {typ}, got {type_name(v)}")
        return bad

    def params(self, y: Located | None, at: Located | None, path: str, params: dict[str, Param], what: str,
               owner: str = "") -> dict[str, Any]:
        """Validate a mapping of named values against declared Params; fill defaults."""
        m = self.as_map(y, path) if y is not None else {}
        out: dict[str, Any] = {}
        if m is None:
            return out
        suffix = f" of {owner}" if owner else ""
        for k, v in m.items():
            if k not in params:
                hint = did_you_mean(k, params) if params else f" ({owner or 'it'} takes no {what}s)"
                self.err(v, f"{path}.{k}", f"unknown {what} {k!r}{suffix}{hint}", key=True)
        for name, p in params.items():
            if name in m:
                val = self.typed(m[name], p.type, f"{path}.{name}")
                if val is not INVALID:
                    out[name] = val
            elif p.required:
                self.err(at, path, f"missing required {what} {name!r}{suffix}")
            else:
                out[name] = p.default
        return out
