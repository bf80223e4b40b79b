"""Registry of the vfio_ap designs (``apcheck designs``): one module per release or series in ap_model/eras/."""

from __future__ import annotations

from checker.lang.design import Design


def all_designs() -> list[Design]:
    from .eras.linux_5_15 import LINUX_5_15, V16_HOOK
    from .eras.linux_6_2 import LINUX_6_2
    from .eras.linux_6_8 import FINAL, LINUX_6_8
    from .eras.mainline import MAINLINE
    from .eras.v15 import V15, V16
    from .eras.v17 import V17, V17_DATA_BEFORE_PUT

    designs: list[object] = [V15, V16, V16_HOOK, LINUX_5_15, V17, V17_DATA_BEFORE_PUT, FINAL,
                             LINUX_6_2, LINUX_6_8, MAINLINE]
    return designs  # type: ignore[return-value]
