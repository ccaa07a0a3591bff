"""How a network is *trained and moved*: data, trainers, the shared training loop, export to Lava, the CLI."""
