"""The window gate the Loihi graph puts behind a DelayDense, so that a delayed projection starts each sample empty."""
