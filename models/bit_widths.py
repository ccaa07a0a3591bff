"""Lava's Loihi 2 bit widths and shifts, in one place: the fixed-point models of every neuron kind (models.kinds),
the FixedNetSpec checks (models.fixed) and the quantiser (deploy.quantize) read them here.

Mirrors lava-nc 0.10's bit-accurate LIF and Dense; models.fixed's docstring says what each width constrains.
"""

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
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7  # Loihi's weight exponent is 4-bit signed
