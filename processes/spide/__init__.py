"""SPIDE's training graph: SPIDENetwork (fused and plain models), SPIDEHost, and the plain graph's processes."""
