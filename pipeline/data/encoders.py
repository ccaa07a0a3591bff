"""Encoders: a batch of samples → time-first network input (T, B, *input_shape).

Three ways, one per `Encoding`:

- CURRENT: static intensities fed as the same input current every step ("direct" input, as IDE/SPIDE use);
- RATE: Bernoulli spikes whose per-step probability is the intensity (a Poisson-like rate code);
- EVENTS: the sample already carries time (event frames, audio spikes); only the axes are reordered.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch


class Encoding(enum.Enum):
    """How a sample becomes a time-first input."""

    CURRENT = "current"
    RATE = "rate"
    EVENTS = "events"


def _check_time_steps(time_steps: int) -> None:
    if time_steps < 1:
        raise ValueError(f"time_steps must be ≥ 1, got {time_steps}")


def current_encode(batch: torch.Tensor, time_steps: int) -> torch.Tensor:
    """(B, *shape) → (T, B, *shape): the same intensities every step, as an `expand` view (no copy)."""
    _check_time_steps(time_steps)
    return batch.unsqueeze(0).expand(time_steps, *batch.shape)


def rate_encode(batch: torch.Tensor, time_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, *shape) → (T, B, *shape) spikes in {0, 1}: P(spike at each step) = intensity, independent draws.

    Uniforms are drawn on the generator's device (CPU by default) and moved to the batch's, so one seeded
    generator gives the same spikes on any device. Returns the batch's dtype.

    Raises:
        ValueError: an intensity lies outside [0, 1] or is NaN.
    """
    _check_time_steps(time_steps)
    if batch.numel() and not bool(((batch >= 0) & (batch <= 1)).all()):
        raise ValueError(f"rate encoding needs intensities in [0, 1], got [{batch.min().item()}, "
                         f"{batch.max().item()}] (NaN counts as outside)")
    device = generator.device if generator is not None else batch.device
    uniform = torch.rand((time_steps, *batch.shape), generator=generator, device=device)
    return (uniform.to(batch.device) < batch).to(batch.dtype)


def events_encode(batch: torch.Tensor, time_steps: int) -> torch.Tensor:
    """(B, T, *shape) → (T, B, *shape): frames or spikes that already have time, as a transposed view.

    Raises:
        ValueError: the batch has no time axis or its length is not ``time_steps``.
    """
    _check_time_steps(time_steps)
    if batch.dim() < 2 or batch.shape[1] != time_steps:
        raise ValueError(f"event batches are (B, T, *input_shape) with T = {time_steps}, got {tuple(batch.shape)}")
    return batch.transpose(0, 1)


@dataclass(frozen=True)
class CurrentEncoder:
    """Constant-current input for ``time_steps`` steps; see `current_encode`."""

    time_steps: int

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return current_encode(batch, self.time_steps)


@dataclass(frozen=True)
class RateEncoder:
    """Bernoulli spikes for ``time_steps`` steps; see `rate_encode`."""

    time_steps: int

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return rate_encode(batch, self.time_steps, generator)


@dataclass(frozen=True)
class EventsEncoder:
    """Time-first view of (B, T, ...) frames; see `events_encode`."""

    time_steps: int

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return events_encode(batch, self.time_steps)


ENCODERS: dict[Encoding, Callable[[int], CurrentEncoder | RateEncoder | EventsEncoder]] = {
    Encoding.CURRENT: CurrentEncoder,
    Encoding.RATE: RateEncoder,
    Encoding.EVENTS: EventsEncoder,
}


def encode(batch: torch.Tensor, encoding: Encoding | str, time_steps: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Time-first input (T, B, *input_shape) for a network.

    Args:
        batch: (B, *input_shape) intensities for CURRENT and RATE; (B, T, *input_shape) for EVENTS.
        encoding: an `Encoding` or its value ("current", "rate", "events").
        time_steps: T.
        generator: randomness for RATE (ignored by the others).

    Raises:
        ValueError: unknown encoding, or a batch whose values or shape do not fit it.
    """
    if not isinstance(encoding, Encoding):
        try:
            encoding = Encoding(encoding)
        except ValueError:
            raise ValueError(f"unknown encoding {encoding!r}; choose one of "
                             f"{', '.join(e.value for e in Encoding)}") from None
    return ENCODERS[encoding](time_steps)(batch, generator)
