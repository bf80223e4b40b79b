"""Registry of the vfio_ap designs (``apcheck designs``): one module per design era."""

from __future__ import annotations

from checker.lang.design import Design


def all_designs() -> list[Design]:
    from .final import FinalDesign
    from .v16_hook import V16HookDesign
    from .v17 import V17Design
    from .v17_data_before_put import V17DataBeforePut

    designs: list[object] = []
    try:
        from .v15 import V15Design, V16Design

        designs += [V15Design(), V16Design()]
    except ImportError:  # pragma: no cover - during development
        pass
    from .eras.linux_6_8 import FINAL, LINUX_6_8

    designs += [V16HookDesign(), V17Design(), V17DataBeforePut(), FINAL, LINUX_6_8]
    del FinalDesign
    return designs  # type: ignore[return-value]
