"""Symmetry reduction (canonical forms of interchangeable instances)."""

from __future__ import annotations

from typing import Any

from checker.lang.program import Program


def symmetry_for(program: Program) -> tuple[Any | None, str]:
    """The symmetry of ``program``'s scenario, or None and why there is none."""
    return None, "the design declares no permutable instances"
