"""Registered designs: the only way a spec's ``design: NAME`` reaches code.

Built-ins come from ``checker.lang.lockprog`` and ``ap_model.designs``; third-party
designs from installed packages declaring an entry point in the group
``apcheck.designs`` (a zero-argument factory returning a Design). Registries
are built by functions, never kept in module state, so tests inject their own.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from checker.lang.design import Design, DesignFactory
from checker.spec.errors import InternalError, SpecError, did_you_mean

ENTRY_POINT_GROUP = "apcheck.designs"
_REQUIRED_ATTRS = ("name", "summary", "constants", "operations", "build")


def _instantiate(obj: Any, origin: str) -> Design:
    """Accept a Design instance, a Design class or a zero-argument factory."""
    design = obj
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "build")):
        design = obj()
    missing = [a for a in _REQUIRED_ATTRS if not hasattr(design, a)]
    if missing:
        raise TypeError(f"{origin or repr(obj)}: not a Design (missing {', '.join(missing)})")
    if not isinstance(design.name, str) or not design.name:
        raise TypeError(f"{origin or repr(obj)}: a design's name must be a non-empty string")
    return design  # type: ignore[no-any-return]


class Registry:
    def __init__(self) -> None:
        self._designs: dict[str, Design] = {}
        self._origins: dict[str, str] = {}
        self.warnings: list[str] = []  # skipped plugins, shown by the CLI on stderr

    def register(self, design_factory: DesignFactory | Design | type, origin: str = "") -> Design:
        """Register a design (or a factory / class making one); duplicate names are an error."""
        design = _instantiate(design_factory, origin)
        if design.name in self._designs:
            raise ValueError(f"design {design.name!r} from {origin or 'caller'} is already registered "
                             f"by {self._origins[design.name] or 'caller'}")
        self._designs[design.name] = design
        self._origins[design.name] = origin
        return design

    def get(self, name: str) -> Design:
        try:
            return self._designs[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise SpecError("", "design", f"unknown design {name!r}{did_you_mean(name, self._designs)}; "
                                          f"known designs: {known}") from None

    def origin(self, name: str) -> str:
        return self._origins.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._designs)

    def all(self) -> list[Design]:
        return [self._designs[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._designs


def _optional_module(name: str) -> Any | None:
    """Import ``name``; None only if that module (or its package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            return None
        raise InternalError(f"built-in module {name} failed to import: {e}") from e


def default_registry(plugins: bool = True) -> Registry:
    """Built-in designs plus installed plugins (entry point group ``apcheck.designs``)."""
    reg = Registry()
    try:
        lockprog = importlib.import_module("checker.lang.lockprog")
        reg.register(lockprog.LockProgramDesign, origin="checker.lang.lockprog")
    except (ImportError, AttributeError) as e:
        raise InternalError(f"built-in design checker.lang.lockprog:LockProgramDesign is unavailable "
                            f"({type(e).__name__}: {e}); the installation is broken") from e

    ap_designs = _optional_module("ap_model.designs")
    if ap_designs is not None:
        for d in ap_designs.all_designs():
            reg.register(d, origin="ap_model.designs")

    if plugins:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            # a broken third-party plugin must not take the built-in designs down with it
            try:
                reg.register(ep.load(), origin=f"plugin {ep.name} ({ep.value})")
            except Exception as e:
                reg.warnings.append(f"plugin {ep.name!r} ({ep.value}) skipped: {type(e).__name__}: {e}")
    return reg
