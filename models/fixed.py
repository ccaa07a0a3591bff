"""FixedNetSpec: a NetSpec in Loihi 2 integer units, as the quantiser (deploy.quantize) produces it.

The integer dynamics mirror Lava's bit-accurate LIF and Dense models (lava.proc.lif.models.PyLifModelBitAcc,
lava.proc.dense.models.PyDenseModelBitAcc, lava-nc 0.10), extended with reset by subtraction and v ≥ θ for
soft-reset neurons. Per step, for a population p (all arithmetic in int64, then range-checked):

    a_in = Σ_c shift(W_c @ s_c, weight_exp_c)      # per connection, then summed (Lava's InPort adds its Dense outputs)
                                                   # shift: << e for e ≥ 0, arithmetic >> −e (floor) for e < 0
    a_in must lie in [ACTIVATION_MIN, ACTIVATION_MAX] (18-bit signed); a simulator raises otherwise
    soft reset:  v = saturate(decay(v, dv) + (a_in << 6) + (bias_mant << bias_exp))
                 s = [v ≥ vth << 6];   v = v − s·(subtraction << 6)
    cuba:        u = wrap(decay(u, du + 1) + (a_in << 6))
                 v = saturate(decay(v, dv) + u + (bias_mant << bias_exp));   s = [v > vth << 6];   v = 0 where s

    decay(x, d) = sign(x)·((|x|·(4096 − d)) >> 12)           # rounds toward zero; d = 0 keeps x
    saturate(x) = clip(x, −(2^23 − 1), 2^23 − 1)               # Lava's 24-bit voltage saturates
    wrap(x)     = x − 2^24 if x > 2^23;  x + 2^24 if x ≤ −2^23  # Lava's current wraps once, into (−2^23, 2^23]

The spike test reads the saturated voltage; a recorded ``v`` is the value after the reset (Lava's Var ``v`` at
the end of the step). The bias enters v unshifted: one bias LSB is 1/64 of an a_in LSB (netx uses bias_exp = 6 to
align the two).

Checked against Lava's source (lava/proc/lif/models.py, lava/proc/dense/models.py, lava/utils/weightutils.py):

- ``du`` gets a hidden +1 (``ds_offset``), ``dv`` none (``dm_offset = 0``): du = 4095 empties u every step, du = 0
  still leaks 1/4096 of it, dv = 0 keeps v.
- Lava's wrap is one conditional ±2^24, not a two's-complement wrap: +2^23 survives and −2^23 becomes +2^23. Both
  are exact wraps only while |decay(u) + (a_in << 6)| < 2^24 + 2^23, which the a_in range guarantees: |a_in << 6|
  ≤ 2^23 and |decay(u)| ≤ 2^23.
- Lava types a_in (and Dense's a_out) as 16-bit, but its Python models neither saturate nor wrap it (an a_in of
  65024 reaches u intact). The 18-bit bound here is ours: the widest input for which a_in << 6 fits the 24-bit
  state, Lava's single conditional wrap is exact and Lava's int32 arithmetic cannot overflow. deploy.quantize
  picks scales so that no input data can exceed it; models.reference raises if a hand-built spec does.
- Dense clips weights to 8 bits by a sign mode it infers from the values unless given ``sign_mode``: MIXED keeps
  [−256, 255] and then drops the LSB with an arithmetic shift, so an odd weight w silently becomes 2·floor(w/2);
  INHIBITORY (no positive weight) clips to [−255, 0], so −256 silently becomes −255. Hence the contract: weights
  are even values in [WEIGHT_MIN, WEIGHT_MAX], and −256 only in a matrix that also holds a positive weight (or
  exported with ``sign_mode=SignMode.MIXED``); the quantiser emits [−254, 254] only.
- vth is unsigned 17-bit and compared after << 6; bias_mant is signed 13-bit; bias_exp is 0..7 (Lava right-shifts
  for a negative bias_exp, which we never emit).

One a_in LSB is worth ``scale`` float units of population p, so a float weight w maps to round(w / (scale·2^e))
and θ to round(θ / scale). Input payloads are integers: 0/1 spikes, event counts in 0..255, or current-encoded
intensities x mapped to round(x / input_scale) (half to even) clipped to 0..255.
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
STATE_MAX = (1 << (STATE_BITS - 1)) - 1  # v saturates to ±STATE_MAX
CURRENT_WRAP = 1 << STATE_BITS  # u wraps by ±2^24 into (−2^23, 2^23]
ACTIVATION_BITS = 18  # a_in bound (ours, see the module docstring): a_in << 6 must fit the 24-bit state
ACTIVATION_MIN, ACTIVATION_MAX = -(1 << (ACTIVATION_BITS - 1)), (1 << (ACTIVATION_BITS - 1)) - 1
THRESHOLD_BITS = 17  # vth is 17-bit unsigned
THRESHOLD_MAX = (1 << THRESHOLD_BITS) - 1
SUBTRACTION_MAX = THRESHOLD_MAX  # soft reset (ours): as wide as vth, so v − (subtraction << 6) stays in 24 bits
BIAS_MANT_BITS = 13  # bias_mant is 13-bit signed
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << (BIAS_MANT_BITS - 1)), (1 << (BIAS_MANT_BITS - 1)) - 1
BIAS_EXP_MAX = 7  # bias_exp is a 3-bit shift
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # 8-bit mixed-sign weights: Lava drops the LSB, so values are even
DECAY_MAX = DECAY_UNITY - 1  # du and dv are 12-bit unsigned
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
