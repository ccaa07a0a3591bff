"""A whole network as one process: a fused, batched CPU model and the Loihi graph of Dense and neuron processes."""
