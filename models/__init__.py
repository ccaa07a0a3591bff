"""What a network *is*: the NetSpec description, neuron dynamics shared by every trainer, network builders and
the reference simulator. Depends on torch and numpy only."""
