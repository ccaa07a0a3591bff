"""Lava: the guarded run that leaves no OS process behind (``session``), the tolerant import of Lava's runtime
(``compat``), and the runners that build and simulate Lava graphs (``run``: run_lava, build_lava_graph, run_netx).

Deliberately empty of imports: ``compat`` must be importable before anything of Lava is.
"""
