"""How a network is *trained and moved*: data/ (data sets, encoders, N-MNIST), one trainer per method beside the
shared training loop and solvers, lava/ (the Lava session and runners), simulate, benchmarks/, the CLI."""
