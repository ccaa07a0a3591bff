"""CUBA LIF with a refractory period (Lava's LIFRefractory semantics) and the per-sample window."""
