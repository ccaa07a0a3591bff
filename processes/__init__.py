"""Lava processes that Lava lacks. No scripts here: Lava imports every module beside a process while it looks
for process models.

Importing this package first imports Lava's runtime tolerantly (``lava_runtime``): every module below imports Lava.
"""

from lavaflow.processes.lava_runtime import import_lava_runtime

import_lava_runtime()
