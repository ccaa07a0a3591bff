"""Integrate-and-fire / leaky neurons with reset by subtraction and v ≥ vth (IDE, SPIDE, STDB)."""
