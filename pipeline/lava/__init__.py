"""Lava: the guarded run that leaves no OS process behind (``session``), and the runners that build and simulate
Lava graphs (``run``: run_lava, build_lava_graph, run_netx; ``live``: a session that stays up across phases).

Importing this package first imports Lava's runtime tolerantly (lavaflow.processes.lava_runtime), so that whatever
touched multiprocessing before (a progress bar's lock) cannot make the modules below fail on import.
"""

from lavaflow.processes.lava_runtime import import_lava_runtime

import_lava_runtime()
