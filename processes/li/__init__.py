"""Non-spiking leaky integrator (NIR LI / CubaLI): Lava's CUBA arithmetic without a threshold, per-sample window."""
