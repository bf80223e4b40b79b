"""Designs and scenarios: what a spec names and how a design turns it into a Program.

A design is registered by name (``apcheck designs``). It declares the constants
it accepts and the operations (kernel paths) a thread may run, each with typed
parameters, so a spec can be validated completely before anything is built.
Designs come from ``ap_model``, ``checker.lang.lockprog`` or installed plugins
(entry point group ``apcheck.designs``); never from a string in a spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from checker.lang.program_types import Program

# Parameter types a spec may use. A type is a string:
#   "int", "bool", "str", "ints" (list of ints), "strs" (list of strings),
#   "path" (file path relative to the spec), or "one of: a|b|c".
ParamType = str


@dataclass(frozen=True)
class Param:
    type: ParamType
    doc: str = ""
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class OperationSig:
    """A kernel path a thread can run, e.g. ``assign_adapter_store``."""

    name: str
    doc: str
    params: dict[str, Param] = field(default_factory=dict)


@dataclass
class OpCall:
    name: str
    args: dict[str, Any]
    where: str = ""  # "file:line:col" of the call in the spec, for errors


@dataclass
class ThreadSpec:
    name: str
    run: list[OpCall]
    cyclic: bool = False
    where: str = ""


@dataclass
class Scenario:
    """A validated spec: the design's input."""

    name: str
    design: str
    description: str
    constants: dict[str, Any]
    threads: list[ThreadSpec]
    path: str = ""  # spec file, for resolving relative paths
    where: dict[str, str] = field(default_factory=dict)  # dotted key -> "file:line:col"
    # YAML path (``threads[0].run[1].apmask_store.reserve[0]``) -> an int's text as the spec wrote it,
    # where the value loses the notation ("0x10"), so a design can show it the same way (sysfs masks in hex)
    written: dict[str, str] = field(default_factory=dict)


class Design(Protocol):
    name: str
    summary: str  # one line: provenance (kernel version / patch series)
    constants: dict[str, Param]
    operations: dict[str, OperationSig]

    def build(self, scenario: Scenario) -> Program:
        """Build the program; raise ScenarioError for semantic errors in the spec."""
        ...


class ScenarioError(ValueError):
    """A spec is well-formed YAML but asks for something the design cannot do.

    ``key`` is the dotted spec path (e.g. ``threads.1.run.0.apid``) so the CLI
    can print ``file:line:col``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class ScenarioErrors(ScenarioError):
    """Several ScenarioErrors found in one build, so the user fixes them in one round.

    A subclass of ScenarioError carrying the first one's key and message."""

    errors: list[ScenarioError]

    def __init__(self, errors: list[ScenarioError]) -> None:
        flat: list[ScenarioError] = []
        for e in errors:
            flat.extend(e.errors if isinstance(e, ScenarioErrors) else [e])
        super().__init__(flat[0].key, flat[0].message)
        self.errors = flat


class ScenarioErrorCollector:
    """Collect a design's ScenarioErrors while it builds, and raise them together.

        errors = ScenarioErrorCollector()
        for call in calls:
            with errors.collect():
                ...  # may raise ScenarioError: recorded, the loop goes on
        errors.raise_if_any()
    """

    def __init__(self) -> None:
        self.errors: list[ScenarioError] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except ScenarioError as e:
            self.errors.append(e)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ScenarioErrors(self.errors)


DesignFactory = Callable[[], Design]
