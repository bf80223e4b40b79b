"""The registered vfio_ap designs, one module per release or series, each a delta on the design it derives
from (docs/designs/ names the commits each applies)."""
