"""Strict YAML spec loading. Specs are data: they never execute code.

PyYAML only parses and composes here (nodes with positions); values are built
by this module from the YAML 1.2 core schema (str, int, float, bool, null,
lists, mappings). Any other tag, ``!!python/...`` included, is an error, so
no spec can instantiate an object. Every mistake is reported with
``file:line:col`` and the dotted spec path, all of them in one pass.
See docs/spec-format.md for the format.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from checker.lang.design import Design, OpCall, Param, Scenario, ScenarioError, ThreadSpec
from checker.lang.inputs import InputError, read_text
from checker.spec import safe_yaml
from checker.spec.errors import SpecError, SpecErrors, closest, did_you_mean
from checker.spec.options import OPTION_TYPES
from checker.spec.registry import Registry
from checker.spec.userprops import ExprSyntaxError, UserProperty, parse

TOP_KEYS = ("name", "design", "description", "program", "constants", "threads", "properties", "check", "prove")
THREAD_KEYS = ("name", "run", "cyclic")
PROPERTY_KEYS = ("only", "skip", "always", "sometimes")
USER_PROPERTY_KEYS = ("name", "expr", "description")
# prove: block (``apcheck prove``, docs/prove.md): key -> Param type; k and bmc >= 0, timeout > 0
PROVE_TYPES = {"lemmas": "strs", "k": "int", "bmc": "int", "timeout": "number",
               "found": "strs"}  # found: Spacer invariants, SMT-LIB (apcheck prove --engine spacer --save-lemmas)
# check: options that only make sense when positive (a zero limit would just mean "explore nothing")
_POSITIVE = {"max_states", "max_depth", "timeout", "max_memory_mb", "walks", "walk_depth"}

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MAP, SEQ = (_T + s for s in ("str", "int", "float", "bool", "null", "map", "seq"))

_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader resolving plain scalars by the YAML 1.2 core schema.

    YAML 1.1 (PyYAML's default) reads ``no`` as false, ``1:20`` as 80 and
    ``2024-01-01`` as a date; in a spec those are strings. Only the parser and
    composer of this class are used, never its constructor.
    """


_CoreLoader.yaml_implicit_resolvers = {}  # drop the YAML 1.1 resolvers inherited from SafeLoader
for _tag, _re, _first in ((NULL, _NULL_RE, "~nN"), (BOOL, _BOOL_RE, "tTfF"), (INT, _INT_RE, "-+0123456789"),
                          (FLOAT, _FLOAT_RE, "-+0123456789.")):
    _CoreLoader.add_implicit_resolver(_tag, _re, list(_first))
_CoreLoader.add_implicit_resolver(NULL, _NULL_RE, [""])


_INVALID = object()  # a value already reported as an error; validators skip it silently


@dataclass
class _Y:
    """A composed YAML value with the position of the value and of its key."""

    value: Any  # dict[str, _Y] | list[_Y] | scalar | _INVALID
    line: int  # 1-based
    col: int
    kline: int = 0
    kcol: int = 0


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec: the design's Scenario plus the run configuration."""

    scenario: Scenario
    design: Design
    check_options: dict[str, Any]  # Options field -> value, validated against OPTION_TYPES
    only: tuple[str, ...]  # properties: only / skip (names checked after build)
    skip: tuple[str, ...]
    where: dict[str, str]  # dotted spec path -> "file:line:col"
    path: str
    prove: dict[str, Any] = field(default_factory=dict)  # prove: block (lemmas names checked after build)
    # properties: always/sometimes written in the spec (checker.spec.userprops; names resolved after build)
    user_properties: tuple[UserProperty, ...] = ()


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, dict):
        return "mapping"
    return {int: "int", float: "float", str: "str", list: "list"}.get(type(v), type(v).__name__)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


class _Loader:
    """Composes a spec and validates it, collecting every error."""

    def __init__(self, filename: str, registry: Registry) -> None:
        self.file = filename
        self.base = os.path.dirname(filename)
        self.registry = registry
        self.errors: list[SpecError] = []
        self.where: dict[str, str] = {}
        self.lines: list[str] = []
        self.user_props: list[UserProperty] = []
        self.written: dict[str, str] = {}  # dotted path -> an int scalar's text where its value drops the notation

    # ------------------------------------------------------------ helpers

    def at(self, line: int, col: int) -> str:
        return f"{self.file}:{line}:{col}"

    def err(self, y: _Y | None, path: str, msg: str, key: bool = False) -> None:
        if y is None:
            where = self.file
        elif key and y.kline:
            where = self.at(y.kline, y.kcol)
        else:
            where = self.at(y.line, y.col)
        self.errors.append(SpecError(where, path, msg))

    def mark(self, y: _Y, path: str, key: bool = False) -> None:
        self.where[path] = self.at(y.kline, y.kcol) if key and y.kline else self.at(y.line, y.col)

    # ------------------------------------------------------------ composing

    def compose(self, text: str) -> _Y | None:
        try:  # bounded depth, alias expansion and characters (safe_yaml)
            node = safe_yaml.compose(_CoreLoader, text, self.file)
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

    def convert(self, node: yaml.Node, path: str, stack: set[int]) -> _Y:
        y = _Y(_INVALID, node.start_mark.line + 1, node.start_mark.column + 1)
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

    def mapping(self, node: yaml.MappingNode, path: str, stack: set[int]) -> dict[str, _Y]:
        out: dict[str, _Y] = {}
        for knode, vnode in node.value:
            kl, kc = knode.start_mark.line + 1, knode.start_mark.column + 1
            ky = _Y(_INVALID, kl, kc)
            if knode.tag == _T + "merge":
                self.err(ky, path, "merge keys ('<<') are not supported; repeat the keys")
                continue
            if not isinstance(knode, yaml.ScalarNode) or knode.tag != STR:
                shown = _tname(self.scalar(knode, ky, path)) if isinstance(knode, yaml.ScalarNode) else "a collection"
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

    def scalar(self, node: yaml.ScalarNode, y: _Y, path: str) -> Any:
        tag, v = node.tag, node.value
        ok: Any = _INVALID
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

    def as_map(self, y: _Y | None, path: str, empty_ok: bool = True) -> dict[str, _Y] | None:
        if y is None or y.value is _INVALID:
            return None
        if path:
            self.mark(y, path)
        if y.value is None and empty_ok:
            return {}
        if not isinstance(y.value, dict):
            self.err(y, path, f"expected mapping, got {_tname(y.value)}")
            return None
        return y.value

    def as_list(self, y: _Y | None, path: str) -> list[_Y] | None:
        if y is None or y.value is _INVALID:
            return None
        self.mark(y, path)
        if y.value is None:
            return []
        if not isinstance(y.value, list):
            self.err(y, path, f"expected list, got {_tname(y.value)}")
            return None
        return y.value

    def keys(self, m: dict[str, _Y], parent: _Y | None, path: str, known: tuple[str, ...] | list[str],
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

    def typed(self, y: _Y, typ: str, path: str) -> Any:
        """Check ``y`` against a Param type string; return the value or _INVALID."""
        v = y.value
        if v is _INVALID:
            return _INVALID
        self.mark(y, path)
        bad = _INVALID
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
                self.err(y, path, f"expected a list of {'ints' if typ == 'ints' else 'strings'}, got {_tname(v)}")
                return bad
            items = [self.typed(e, typ[:-1], f"{path}[{i}]") for i, e in enumerate(v)]
            return bad if any(i is _INVALID for i in items) else items
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
            got = repr(v) if isinstance(v, str) else _tname(v)
            hint = did_you_mean(v, choices) if isinstance(v, str) else ""
            self.err(y, path, f"expected one of {shown}, got {got}{hint}")
            return bad
        else:
            raise TypeError(f"unknown parameter type {typ!r} (design bug)")
        self.err(y, path, f"expected {typ}, got {_tname(v)}")
        return bad

    def params(self, y: _Y | None, at: _Y | None, path: str, params: dict[str, Param], what: str,
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
                if val is not _INVALID:
                    out[name] = val
            elif p.required:
                self.err(at, path, f"missing required {what} {name!r}{suffix}")
            else:
                out[name] = p.default
        return out

    # ------------------------------------------------------------ the schema

    def load(self, text: str) -> LoadedSpec | None:
        self.lines = text.splitlines()  # user property errors point inside their expression string
        root = self.compose(text)
        if root is None:
            if not self.errors:
                self.errors.append(SpecError(self.file, "", "empty spec: expected a mapping with at least 'design'"))
            return None
        top = self.as_map(root, "", empty_ok=False)
        if top is None:
            return None
        self.keys(top, root, "", TOP_KEYS, required=("design",))

        name = self.file  # default: the path as given, unique where stems are not (docs/spec-format.md)
        if "name" in top:
            name = self.typed(top["name"], "str", "name")
        description = self.typed(top["description"], "str", "description") if "description" in top else ""

        design: Design | None = None
        if "design" in top:
            dname = self.typed(top["design"], "str", "design")
            if isinstance(dname, str):
                try:
                    design = self.registry.get(dname)
                except SpecError as e:
                    self.err(top["design"], "design", e.message)

        constants = self.constants(top, root, design)
        threads = self.threads(top.get("threads"), design)
        only, skip = self.properties(top.get("properties"))
        check = self.check(top.get("check"))
        prove = self.prove(top.get("prove"))
        if self.errors or design is None:
            return None
        scenario = Scenario(
            name=name, design=design.name, description=description, constants=constants, threads=threads,
            path=self.file, where=self.where, written=self.written,
        )
        return LoadedSpec(scenario, design, check, only, skip, self.where, self.file, prove, tuple(self.user_props))

    def constants(self, top: dict[str, _Y], root: _Y, design: Design | None) -> dict[str, Any]:
        cy = top.get("constants")
        cmap = self.as_map(cy, "constants") if cy is not None else {}
        if cmap is None or design is None:  # not a mapping (reported), or nothing to check against
            return {}
        declared = dict(design.constants)
        at = cy if cy is not None else root  # where a missing required constant is reported
        prog = top.get("program")
        if prog is None:
            return self.params(cy, at, "constants", declared, "constant")
        # top-level ``program:`` is sugar for constants.program
        if "program" in cmap:
            self.err(prog, "program", "'program' given both at top level and in constants", key=True)
        elif "program" not in declared:
            self.err(prog, "program", f"unknown key 'program': design {design.name!r} takes no program", key=True)
        else:
            val = self.typed(prog, declared.pop("program").type, "program")
            self.where["constants.program"] = self.where["program"]
            out = self.params(cy, at, "constants", declared, "constant")
            if val is not _INVALID:
                out["program"] = val
            return out
        return self.params(cy, at, "constants", declared, "constant")

    def threads(self, ty: _Y | None, design: Design | None) -> list[ThreadSpec]:
        items = self.as_list(ty, "threads")
        if items is not None and ty is not None and len(items) > safe_yaml.MAX_THREADS:
            self.err(ty, "threads", f"more than {safe_yaml.MAX_THREADS} threads (the input limit)")
            return []
        out: list[ThreadSpec] = []
        seen: dict[str, _Y] = {}
        for i, t in enumerate(items or []):
            tp = f"threads[{i}]"
            m = self.as_map(t, tp, empty_ok=False)
            if m is None:
                continue
            self.mark(t, tp)
            self.keys(m, t, tp, THREAD_KEYS, required=("name", "run"))
            tname = self.typed(m["name"], "str", f"{tp}.name") if "name" in m else _INVALID
            if isinstance(tname, str):
                if tname in seen:
                    first = seen[tname]
                    self.err(m["name"], f"{tp}.name",
                             f"duplicate thread name {tname!r} (first at line {first.line}, column {first.col})")
                else:
                    seen[tname] = m["name"]
            cyclic = self.typed(m["cyclic"], "bool", f"{tp}.cyclic") if "cyclic" in m else False
            calls: list[OpCall] = []
            run = self.as_list(m.get("run"), f"{tp}.run")
            if run is not None and not run and "run" in m:
                self.err(m["run"], f"{tp}.run", "empty run list: a thread runs at least one operation")
            if run is not None and len(run) > safe_yaml.MAX_RUN:
                self.err(m["run"], f"{tp}.run", f"more than {safe_yaml.MAX_RUN} operations (the input limit)")
                run = None
            for j, c in enumerate(run or []):
                call = self.call(c, f"{tp}.run[{j}]", design)
                if call is not None:
                    calls.append(call)
            if isinstance(tname, str) and isinstance(cyclic, bool):
                out.append(ThreadSpec(tname, calls, cyclic, self.where[tp]))
        return out

    def call(self, c: _Y, cp: str, design: Design | None) -> OpCall | None:
        args_y: _Y | None = None
        if isinstance(c.value, str):
            op, op_y = c.value, c
        elif isinstance(c.value, dict) and len(c.value) == 1:
            op, args_y = next(iter(c.value.items()))
            op_y = _Y(op, args_y.kline, args_y.kcol)
        else:
            if c.value is not _INVALID:
                got = f"a mapping with {len(c.value)} keys" if isinstance(c.value, dict) else _tname(c.value)
                self.err(c, cp, f"expected an operation name or a single-key mapping "
                                f"'operation: {{arg: value}}', got {got}")
            return None
        self.mark(op_y, cp)
        if design is None:
            return None
        sig = design.operations.get(op)
        if sig is None:
            self.err(op_y, cp, f"unknown operation {op!r}{did_you_mean(op, design.operations)}")
            return None
        # args are addressed as threads[i].run[j].arg (the op name is not part of the path)
        args = self.params(args_y, op_y, cp, sig.params, "parameter", owner=op)
        self.mark(op_y, cp)  # the call is located at its operation name, not its args mapping
        return OpCall(op, args, self.where[cp])

    def properties(self, py: _Y | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        m = self.as_map(py, "properties")
        if m is None:
            return (), ()
        self.keys(m, py, "properties", PROPERTY_KEYS)
        got: list[tuple[str, ...]] = []
        for k in ("only", "skip"):
            names = self.typed(m[k], "strs", f"properties.{k}") if k in m else []
            got.append(tuple(names) if isinstance(names, list) else ())
        for kind in ("always", "sometimes"):
            for i, item in enumerate(self.as_list(m.get(kind), f"properties.{kind}") or []):
                self.user_property(item, kind, f"properties.{kind}[{i}]")
        return got[0], got[1]

    def user_property(self, y: _Y, kind: str, path: str) -> None:
        """One ``{name, expr, description}`` entry; the expression's syntax is checked now, its names after build."""
        m = self.as_map(y, path, empty_ok=False)
        if m is None:
            return
        self.keys(m, y, path, USER_PROPERTY_KEYS, required=("name", "expr"))
        values = {k: self.typed(m[k], "str", f"{path}.{k}") for k in USER_PROPERTY_KEYS if k in m}
        name, text = values.get("name"), values.get("expr")
        if not isinstance(name, str) or not isinstance(text, str):
            return
        if any(p.name == name for p in self.user_props):
            self.err(m["name"], f"{path}.name", f"duplicate property name {name!r}")
        ey = m["expr"]
        line, col = ey.line, ey.col
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if src[col - 1:col] in ("'", '"'):  # a quoted scalar: the text starts after the quote
            col += 1
        self.mark(ey, f"{path}.expr")
        try:
            parse(text)
        except ExprSyntaxError as e:
            self.errors.append(SpecError(self.at(line, col + e.offset), f"{path}.expr", e.message))
            return
        desc = values.get("description", "")
        self.user_props.append(UserProperty(name, kind, text, desc if isinstance(desc, str) else "", line, col, path))

    def check(self, cy: _Y | None) -> dict[str, Any]:
        m = self.as_map(cy, "check")
        if m is None:
            return {}
        self.keys(m, cy, "check", list(OPTION_TYPES), what="option")
        out: dict[str, Any] = {}
        for k, typ in OPTION_TYPES.items():
            if k not in m:
                continue
            v = self.typed(m[k], typ, f"check.{k}")
            if v is _INVALID:
                continue
            if k in _POSITIVE and not 0 < v < math.inf:  # also refuses .nan and .inf
                what = "a positive int" if typ == "int" else "a positive finite number"
                self.err(m[k], f"check.{k}", f"expected {what}, got {v}")
                continue
            if k == "workers" and v < 0:  # 0: one per core
                self.err(m[k], "check.workers", f"expected a non-negative int (0: one per core), got {v}")
                continue
            out[k] = v
        return out

    def prove(self, py: _Y | None) -> dict[str, Any]:
        m = self.as_map(py, "prove")
        if m is None:
            return {}
        self.keys(m, py, "prove", list(PROVE_TYPES), what="option")
        out: dict[str, Any] = {}
        for k, typ in PROVE_TYPES.items():
            if k not in m:
                continue
            v = self.typed(m[k], typ, f"prove.{k}")
            if v is _INVALID:
                continue
            if k in ("k", "bmc") and v < 0:
                self.err(m[k], f"prove.{k}", f"expected a non-negative int, got {v}")
                continue
            if k == "timeout" and not 0 < v < math.inf:  # also refuses .nan and .inf
                self.err(m[k], f"prove.{k}", f"expected a positive finite number, got {v}")
                continue
            out[k] = tuple(v) if k == "lemmas" else v
        return out


def _order(e: SpecError) -> tuple[int, int]:
    parts = e.where.rsplit(":", 2)
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return 0, 0


def parse_spec(text: str, filename: str, registry: Registry) -> LoadedSpec:
    """Validate spec ``text`` as if read from ``filename`` (relative paths resolve beside it)."""
    loader = _Loader(filename, registry)
    loaded = loader.load(text)
    if loader.errors or loaded is None:
        errors = sorted(loader.errors, key=_order) or [SpecError(filename, "", "invalid spec")]
        raise SpecErrors(errors)
    return loaded


def load_spec(path: str, registry: Registry) -> LoadedSpec:
    """Read and validate a spec file; raise SpecError (possibly SpecErrors) on any problem."""
    try:
        text = read_text(path, safe_yaml.MAX_SPEC_BYTES, "spec")
    except InputError as e:
        raise SpecError(f"{path}:{e.line}:{e.col}", "", e.message) from None
    except FileNotFoundError:
        raise SpecError("", path, "no such file") from None
    except IsADirectoryError:
        raise SpecError("", path, "is a directory, expected a YAML spec file") from None
    except OSError as e:
        raise SpecError("", path, e.strerror or str(e)) from None
    return parse_spec(text, path, registry)


# ---------------------------------------------------------------- after loading


def normalize_key(key: str) -> str:
    """``threads.1.run.0.apid`` (ScenarioError style) -> ``threads[1].run[0].apid``."""
    parts: list[str] = []
    for seg in key.split("."):
        if seg.isdigit() and parts:
            parts[-1] += f"[{seg}]"
        elif seg:
            parts.append(seg)
    return ".".join(parts)


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def locate(loaded: LoadedSpec | Scenario, key: str) -> str:
    """``file:line:col`` of a spec path, or of its nearest located parent."""
    p = normalize_key(key)
    while p:
        if p in loaded.where:
            return loaded.where[p]
        p = _parent(p)
    return f"{loaded.path}:1:1"


def scenario_error(loaded: LoadedSpec | Scenario, e: ScenarioError) -> SpecError:
    """Turn a design's ScenarioError into a located SpecError."""
    return SpecError(locate(loaded, e.key), normalize_key(e.key), e.message)


def unknown_names(names: tuple[str, ...] | list[str], known: list[str], path: str,
                  where: dict[str, str] | None = None, fallback: str = "", indexed: bool = True,
                  what: str = "property") -> list[SpecError]:
    """One error per property name not in ``known``; ``path[i]`` locates each through ``where``."""
    errors = []
    for i, n in enumerate(names):
        if n not in known:
            p = f"{path}[{i}]" if indexed else path
            at = (where or {}).get(p, fallback)
            errors.append(SpecError(at, p, f"unknown {what} {n!r}{did_you_mean(n, known)}; "
                                              f"known: {', '.join(known)}"))
    return errors


def validate_property_names(loaded: LoadedSpec, known: list[str]) -> None:
    """Check ``properties: only/skip`` against the built program's property names."""
    errors = [e for k, names in (("only", loaded.only), ("skip", loaded.skip))
              for e in unknown_names(names, known, f"properties.{k}", loaded.where, loaded.path)]
    if errors:
        raise SpecErrors(errors)


def validate_lemma_names(loaded: LoadedSpec, known: list[str]) -> None:
    """Check ``prove: lemmas`` against the built program's provable names (its ``always`` properties)."""
    errors = unknown_names(tuple(loaded.prove.get("lemmas", ())), known, "prove.lemmas", loaded.where,
                           loaded.path, what="lemma")
    if errors:
        raise SpecErrors(errors)

