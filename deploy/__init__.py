"""Where a network *runs*: run configurations, quantisation, lowering to Lava process records, Loihi 2 resource
report, deployment bundles."""
