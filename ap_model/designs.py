"""Registry of the vfio_ap designs (``apcheck designs``): one module per release or series in ap_model/eras/."""

from __future__ import annotations

from checker.lang.design import Design


def all_designs() -> list[Design]:
    from .eras.linux_5_11 import LINUX_5_10, LINUX_5_11
    from .eras.linux_5_12 import LINUX_5_12
    from .eras.linux_5_15 import LINUX_5_15, V16_HOOK
    from .eras.linux_5_15_pre import LINUX_5_15_PRE
    from .eras.linux_6_2 import LINUX_6_2
    from .eras.linux_6_8 import FINAL, LINUX_6_8
    from .eras.mainline import MAINLINE
    from .eras.v15 import V15, V16
    from .eras.v17 import V17, V17_DATA_BEFORE_PUT
    from .eras.v18 import V18

    designs: list[object] = [LINUX_5_10, LINUX_5_11, LINUX_5_12, LINUX_5_15_PRE, LINUX_5_15, V16_HOOK, V15, V16,
                             V17, V17_DATA_BEFORE_PUT, V18, LINUX_6_2, LINUX_6_8, FINAL, MAINLINE]
    return designs  # type: ignore[return-value]
