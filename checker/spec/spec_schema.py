"""JSON Schema of the spec format, generated from the registered designs.

Editors (VS Code's YAML extension, ...) complete and check specs against it:
``# yaml-language-server: $schema=<path to spec.schema.json>``. apcheck itself
validates specs with its own loader (checker.spec.spec), which says more (did
you mean, positions); this schema is the same contract in a standard form.
The shipped file ``checker/schemas/spec.schema.json`` is this function's output
for the built-in designs (a test keeps the two equal):
``python -m checker.spec.spec_schema > checker/schemas/spec.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

from checker.lang.design import Param
from checker.spec.options import OPTION_TYPES
from checker.spec.registry import Registry, default_registry
from checker.spec.spec import PROVE_TYPES, THREAD_KEYS, TOP_KEYS, USER_PROPERTY_KEYS

_SIMPLE: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"}, "bool": {"type": "boolean"}, "str": {"type": "string"},
    "number": {"type": "number"}, "path": {"type": "string"},
    "ints": {"type": "array", "items": {"type": "integer"}},
    "strs": {"type": "array", "items": {"type": "string"}},
}


def param_schema(p: Param) -> dict[str, Any]:
    if p.type.startswith("one of:"):
        out: dict[str, Any] = {"enum": [x.strip() for x in p.type[len("one of:"):].split("|")]}
    else:
        out = dict(_SIMPLE[p.type])
    if p.doc:
        out["description"] = p.doc
    return out


def _params(params: dict[str, Param]) -> dict[str, Any]:
    return {"type": ["object", "null"], "properties": {k: param_schema(p) for k, p in params.items()},
            "required": [k for k, p in params.items() if p.required and p.default is None],
            "additionalProperties": False}


def _design_rules(registry: Registry, defs: dict[str, Any]) -> list[dict[str, Any]]:
    """One if/then per design; operation and constants schemas shared between designs go to ``defs``."""

    def shared(kind: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        same = next((k for k, v in defs.items() if k.startswith(kind + ".") and v == schema), None)
        if same is not None:
            return {"$ref": f"#/$defs/{same}"}
        key, n = f"{kind}.{name}", 2
        while key in defs and defs[key] != schema:  # same name, different signature: keep both
            key, n = f"{kind}.{name}.{n}", n + 1
        defs[key] = schema
        return {"$ref": f"#/$defs/{key}"}

    rules = []
    for d in registry.all():
        calls: list[dict[str, Any]] = []
        for op in d.operations.values():
            calls.append(shared("call", op.name, {
                "type": "object", "properties": {op.name: _params(op.params)}, "required": [op.name],
                "additionalProperties": False, "description": op.doc}))
        bare = [op.name for op in d.operations.values() if not any(p.required for p in op.params.values())]
        if bare:
            calls.append({"enum": bare})
        constants = {"type": "object", "properties": {k: param_schema(p) for k, p in d.constants.items()},
                     "additionalProperties": False}
        then: dict[str, Any] = {"properties": {"constants": shared("constants", d.name, constants)}}
        if calls:
            then["properties"]["threads"] = {"items": {"properties": {"run": {"items": {"anyOf": calls}}}}}
        rules.append({"if": {"properties": {"design": {"const": d.name}}, "required": ["design"]}, "then": then})
    return rules


def spec_schema(registry: Registry | None = None) -> dict[str, Any]:
    reg = registry or default_registry()
    user_prop = {"type": "object", "properties": {k: {"type": "string"} for k in USER_PROPERTY_KEYS},
                 "required": ["name", "expr"], "additionalProperties": False}
    props: dict[str, Any] = {
        "name": {"type": "string", "description": "scenario name (default: the file path)"},
        "design": {"enum": [d.name for d in reg.all()], "description": "a registered design (apcheck designs)"},
        "description": {"type": "string"},
        "program": {"type": "string", "description": "short for constants.program"},
        "constants": {"type": "object"},
        "threads": {"type": "array", "items": {
            "type": "object", "required": ["name", "run"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "cyclic": {"type": "boolean"},
                           "run": {"type": "array", "minItems": 1}}}},
        "properties": {"type": "object", "additionalProperties": False, "properties": {
            "only": {"type": "array", "items": {"type": "string"}},
            "skip": {"type": "array", "items": {"type": "string"}},
            "always": {"type": "array", "items": user_prop},
            "sometimes": {"type": "array", "items": user_prop}}},
        "check": {"type": "object", "additionalProperties": False,
                  "properties": {k: param_schema(Param(t)) for k, t in OPTION_TYPES.items()}},
        "prove": {"type": "object", "additionalProperties": False,
                  "properties": {k: param_schema(Param(t)) for k, t in PROVE_TYPES.items()}},
    }
    assert list(props) == list(TOP_KEYS) and set(props["threads"]["items"]["properties"]) == set(THREAD_KEYS)
    defs: dict[str, Any] = {}
    rules = _design_rules(reg, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://apcheck.invalid/schemas/spec.schema.json",
        "title": "apcheck spec",
        "description": "A scenario for a registered design (docs/spec-format.md).",
        "type": "object",
        "properties": props,
        "required": ["design"],
        "additionalProperties": False,
        "allOf": rules,
        "$defs": defs,
    }


def main() -> None:
    print(json.dumps(spec_schema(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
