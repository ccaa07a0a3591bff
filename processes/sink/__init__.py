"""A sink that counts the spikes of each sample window and keeps them for one read at the end of a run."""
