"""Settings of the whole suite's process.

- The operator's collector thresholds (`flowpods.kube.operator.GC_THRESHOLDS`): the core's long simulations (a
  flow of 1,000 tasks, a ForEach of 10,000 values) spent a third of their time in young collections at Python's
  defaults.
- No COLUMNS or LINES: the commands the tests start write at their own width when not on a terminal, as for a
  user's pipe. pytest-xdist's workers (`make test`) set them to 80 x 24.
"""

from __future__ import annotations

import gc
import os

from flowpods.kube.operator import GC_THRESHOLDS

gc.set_threshold(*GC_THRESHOLDS)
for name in ("COLUMNS", "LINES"):
    os.environ.pop(name, None)
