"""Where a network *runs*: run configurations, quantisation, Loihi 2 resource report, deployment bundles."""
