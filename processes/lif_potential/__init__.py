"""LIF with a leak potential and a reset potential (NIR's LIF) with the per-sample window."""
