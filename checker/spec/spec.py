"""Strict spec loading: the spec schema over located YAML values. Specs are data: they never execute code.

``checker.spec.yaml_reader`` composes the YAML (core schema only, every value
with its position); this module checks it against the spec format and the
registered design: top-level keys, constants, threads and their calls,
properties, the ``check:`` and ``prove:`` blocks. Every mistake is reported with
``file:line:col`` and the dotted spec path, all of them in one pass.
See docs/spec-format.md for the format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from checker.lang.design import Design, OpCall, Scenario, ScenarioError, ThreadSpec
from checker.lang.inputs import InputError, read_text
from checker.spec import safe_yaml
from checker.spec.errors import SpecError, SpecErrors, did_you_mean
from checker.spec.options import OPTION_TYPES
from checker.spec.registry import Registry
from checker.spec.userprops import ExprSyntaxError, UserProperty, parse
from checker.spec.yaml_reader import INVALID, Located, YamlReader, type_name

TOP_KEYS = ("name", "design", "description", "program", "constants", "threads", "properties", "check", "prove")
THREAD_KEYS = ("name", "run", "cyclic")
PROPERTY_KEYS = ("only", "skip", "always", "sometimes")
USER_PROPERTY_KEYS = ("name", "expr", "description")
# prove: block (``apcheck prove``, docs/prove.md): key -> Param type; k and bmc >= 0, timeout > 0
PROVE_TYPES = {"lemmas": "strs", "k": "int", "bmc": "int", "timeout": "number",
               "found": "strs"}  # found: Spacer invariants, SMT-LIB (apcheck prove --engine spacer --save-lemmas)
# check: options that only make sense when positive (a zero limit would just mean "explore nothing")
_POSITIVE = {"max_states", "max_depth", "timeout", "max_memory_mb", "walks", "walk_depth"}


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


class _Loader(YamlReader):
    """Validates a composed spec against the spec schema and the registered design, collecting every error."""

    def __init__(self, filename: str, registry: Registry) -> None:
        super().__init__(filename)
        self.registry = registry
        self.lines: list[str] = []
        self.user_props: list[UserProperty] = []

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

    def constants(self, top: dict[str, Located], root: Located, design: Design | None) -> dict[str, Any]:
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
            if val is not INVALID:
                out["program"] = val
            return out
        return self.params(cy, at, "constants", declared, "constant")

    def threads(self, ty: Located | None, design: Design | None) -> list[ThreadSpec]:
        items = self.as_list(ty, "threads")
        if items is not None and ty is not None and len(items) > safe_yaml.MAX_THREADS:
            self.err(ty, "threads", f"more than {safe_yaml.MAX_THREADS} threads (the input limit)")
            return []
        out: list[ThreadSpec] = []
        seen: dict[str, Located] = {}
        for i, t in enumerate(items or []):
            tp = f"threads[{i}]"
            m = self.as_map(t, tp, empty_ok=False)
            if m is None:
                continue
            self.mark(t, tp)
            self.keys(m, t, tp, THREAD_KEYS, required=("name", "run"))
            tname = self.typed(m["name"], "str", f"{tp}.name") if "name" in m else INVALID
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

    def call(self, c: Located, cp: str, design: Design | None) -> OpCall | None:
        args_y: Located | None = None
        if isinstance(c.value, str):
            op, op_y = c.value, c
        elif isinstance(c.value, dict) and len(c.value) == 1:
            op, args_y = next(iter(c.value.items()))
            op_y = Located(op, args_y.kline, args_y.kcol)
        else:
            if c.value is not INVALID:
                got = f"a mapping with {len(c.value)} keys" if isinstance(c.value, dict) else type_name(c.value)
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

    def properties(self, py: Located | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
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

    def user_property(self, y: Located, kind: str, path: str) -> None:
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

    def check(self, cy: Located | None) -> dict[str, Any]:
        m = self.as_map(cy, "check")
        if m is None:
            return {}
        self.keys(m, cy, "check", list(OPTION_TYPES), what="option")
        out: dict[str, Any] = {}
        for k, typ in OPTION_TYPES.items():
            if k not in m:
                continue
            v = self.typed(m[k], typ, f"check.{k}")
            if v is INVALID:
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

    def prove(self, py: Located | None) -> dict[str, Any]:
        m = self.as_map(py, "prove")
        if m is None:
            return {}
        self.keys(m, py, "prove", list(PROVE_TYPES), what="option")
        out: dict[str, Any] = {}
        for k, typ in PROVE_TYPES.items():
            if k not in m:
                continue
            v = self.typed(m[k], typ, f"prove.{k}")
            if v is INVALID:
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

