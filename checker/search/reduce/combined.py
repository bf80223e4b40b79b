"""Pick the reductions a search runs, from ``Options.reduction`` and the model.

``all`` (the default) runs every reduction that preserves the selected
properties; ``por`` / ``symmetry`` run one; ``none`` runs neither. A reduction
that cannot run (random simulation; no permutable instances in the scenario)
is named in ``describe()["skipped"]`` with the reason, and the properties a
reduction would not preserve are listed with why in ``describe()["unreduced"]``.
"""

from __future__ import annotations

from typing import Any

from checker.search.reduce.por import PartialOrder


class CombinedReducer:
    """Partial-order selection and/or symmetry canonicalisation behind the Reducer interface."""

    def __init__(self, requested: str, por: PartialOrder | None, symmetry: Any | None,
                 skipped: dict[str, str], unreduced: dict[str, str]) -> None:
        self.requested = requested
        self.por = por
        self.symmetry = symmetry
        self.skipped = skipped
        self.unreduced = unreduced
        if por is not None:
            self.select = por.select  # type: ignore[method-assign]
        if symmetry is not None:
            self.canonical = symmetry.canonical  # type: ignore[method-assign]

    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return succs

    def canonical(self, state: int) -> int:
        return state

    def active(self) -> bool:
        return self.por is not None or self.symmetry is not None

    def describe(self) -> dict[str, object]:
        ran = (["partial-order"] if self.por is not None else []) + (["symmetry"] if self.symmetry else [])
        out: dict[str, object] = {"requested": self.requested, "ran": ran, "skipped": dict(self.skipped),
                                  "unreduced": dict(self.unreduced)}
        if self.por is not None:
            out["ample_states"] = self.por.reduced_states
        if self.symmetry is not None:
            out["symmetry_groups"] = self.symmetry.describe()
            out["symmetry_classes"] = self.symmetry.describe_classes()
        out["shortest_traces"] = self.por is None  # symmetry keeps BFS distances: the initial state is fixed
        return out


def build_reducer(model: Any, options: Any) -> CombinedReducer:
    """``model``: a ProgramModel; ``options``: Options (``reduction``, ``strategy``, selected properties)."""
    requested = getattr(options, "reduction", "all")
    program = model.program
    skipped: dict[str, str] = {}
    want_por = requested in ("por", "all")
    want_sym = requested in ("symmetry", "all")
    if options.strategy == "random" and requested != "none":
        skipped = {r: "random simulation explores single walks" for r in ("partial-order", "symmetry")}
        want_por = want_sym = False
    por = None
    if want_por:
        if options.max_depth is not None:
            skipped["partial-order"] = ("--max-depth bounds distances in the full graph; ample sets would "
                                        "change which states lie within it")
        elif len(program.threads) < 2:
            skipped["partial-order"] = "one thread: nothing interleaves"
        else:
            visible = [p.name for p in program.properties if model._selected(p.name)]
            por = PartialOrder(program, visible)
            if not por.useful:
                skipped["partial-order"] = ("no step is independent of every other thread and invisible "
                                            "to the selected properties: nothing to reduce")
                por = None
    symmetry = None
    if want_sym:
        from checker.search.reduce.symmetry import symmetry_for

        symmetry, why = symmetry_for(program, [p.name for p in program.properties if model._selected(p.name)])
        if symmetry is None:
            skipped["symmetry"] = why
    return CombinedReducer(requested, por, symmetry, skipped, {})


__all__ = ["CombinedReducer", "build_reducer"]
