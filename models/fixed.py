"""FixedNetSpec: a NetSpec in Loihi 2 integer units, as the quantiser (deploy.quantize) produces it.

The integer dynamics mirror Lava's bit-accurate LIF and Dense models (lava.proc.lif.models.PyLifModelBitAcc,
lava.proc.dense.models.PyDenseModelBitAcc, lava-nc 0.10), extended with reset by subtraction and v ≥ θ for
soft-reset neurons. Per step, for a population p (all arithmetic in int64, then range-checked):

    a_in = Σ_c shift(W_c @ s_c, weight_exp_c)           # shift: << e for e ≥ 0, arithmetic >> −e for e < 0
    soft reset:  v = decay(v, dv) + (a_in << 6) + (bias_mant << bias_exp)
                 s = [v ≥ vth << 6];   v = v − s·(subtraction << 6)
    cuba:        u = wrap24(decay(u, du + 1) + (a_in << 6))
                 v = decay(v, dv) + u + (bias_mant << bias_exp);   s = [v > vth << 6];   v = 0 where s
    v saturates to ±(2^23 − 1) after integration (Lava's 24-bit voltage); decay(x, d) = sign(x)·((|x|·(4096 − d)) >> 12)

One a_in LSB is worth ``scale`` float units of population p, so a float weight w maps to round(w / (scale·2^e))
and θ to round(θ / scale). Input payloads are integers: 0/1 spikes, event counts, or current-encoded
intensities x mapped to round(x / input_scale) in 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lavaflow.models.netspec import Conv, Input, Readout

# Bit widths and shifts of Lava's bit-accurate LIF (lava/proc/lif/models.py) and Dense (lava/proc/dense/models.py).
ACTIVATION_SHIFT = 6  # a_in << 6 aligns the synaptic input with the 24-bit state (Lava: act_shift)
THRESHOLD_SHIFT = 6  # vth << 6 (Lava: vth_shift)
DECAY_BITS = 12  # decays are fractions of 4096 (Lava: decay_shift)
DECAY_UNITY = 1 << DECAY_BITS
STATE_BITS = 24  # u and v are 24-bit signed
STATE_MAX = (1 << (STATE_BITS - 1)) - 1
THRESHOLD_BITS = 17  # vth is 17-bit unsigned
BIAS_MANT_BITS = 13  # bias_mant is 13-bit signed
BIAS_EXP_MAX = 7  # bias_exp is a 3-bit shift
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # 8-bit mixed-sign weights: Lava drops the LSB, so values are even
PAYLOAD_MAX = 255  # graded input payloads are 8-bit unsigned


@dataclass(frozen=True, eq=False)
class FixedPopulation:
    """A population in integer units; ``kind`` is "soft_reset" or "cuba"."""

    kind: str
    size: int
    vth: int
    dv: int  # 0..4095
    bias_mant: np.ndarray  # (size,) int64
    bias_exp: int
    scale: float  # float value of one a_in LSB (for reports and de-quantisation)
    subtraction: int = 0  # soft reset: charge a spike removes, in a_in LSBs (before << 6)
    du: int = 4095  # cuba: 0..4095 (Lava adds 1 internally, so 4095 empties u every step)
    shape: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class FixedConnection:
    source: str
    target: str
    weight: np.ndarray  # int64, (n_out, n_in) for dense; (C_out, C_in, kH, kW) for conv; even values in [−256, 254]
    weight_exp: int
    delay_steps: int
    conv: Conv | None = None  # geometry of a convolution (its float weight is kept for reference only)


@dataclass(frozen=True, eq=False)
class FixedNetSpec:
    input: Input
    input_scale: float  # current encoding: payload = round(x / input_scale); 1.0 for spike and event input
    populations: dict[str, FixedPopulation]
    connections: tuple[FixedConnection, ...]
    readout: Readout  # stays in float: evaluated on the host from integer spike counts
    time_steps: int
    metadata: dict[str, str] = field(default_factory=dict)
