"""Lava's current-based LIF (hard reset, v > vth) with the per-sample window of lavaflow.processes.window."""
