"""Figures of what a network does on a few samples: spike rasters and per-population firing rates.

``simulate`` writes them per backend from the reference simulator's per-step records in the backend's arithmetic
(float64 for torch and lava-float, Lava's fixed-point integers for lava-fixed); Lava itself streams only spike
counts, and its output counts are held to the reference's by the spike agreement figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

RASTER_SAMPLES = 4  # samples side by side in a raster
RASTER_NEURONS = 200  # at most this many rows per population (evenly spaced neurons), so rasters stay legible


def _save(figure: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(path)


def plot_raster(spikes: dict[str, np.ndarray], labels: np.ndarray, predictions: np.ndarray, path: Path,
                title: str) -> None:
    """One panel per population: neurons (rows) × time steps of the first samples side by side.

    Args:
        spikes: population → (T, B, n) 0/1 spikes, in update order.
        labels, predictions: (B,) of the same samples, written under each sample.
    """
    time_steps, batch = next(iter(spikes.values())).shape[:2]
    shown = min(RASTER_SAMPLES, batch)
    heights = [min(RASTER_NEURONS, values.shape[2]) for values in spikes.values()]
    figure, axes = plt.subplots(len(spikes), 1, figsize=(8, 1.2 + 2.2 * len(spikes)), squeeze=False,
                                gridspec_kw={"height_ratios": [max(h, 40) for h in heights]})
    for axis, (name, values), rows in zip(axes[:, 0], spikes.items(), heights, strict=True):
        neurons = np.linspace(0, values.shape[2] - 1, rows).round().astype(int)
        image = values[:, :shown][:, :, neurons].transpose(2, 1, 0).reshape(rows, shown * time_steps)
        axis.imshow(image, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                    extent=(0, shown * time_steps, rows, 0))
        for boundary in range(1, shown):
            axis.axvline(boundary * time_steps, color="tab:red", linewidth=0.8)
        rate = float(values[:, :shown].mean())
        subset = "" if rows == values.shape[2] else f" ({rows} evenly spaced shown)"
        axis.set_ylabel("neuron", fontsize=8)
        axis.set_title(f"{name}: {values.shape[2]} neurons{subset}, {rate:.3f} spikes per neuron and step",
                       fontsize=9, loc="left")
        axis.set_yticks([])
        axis.set_xticks([])
    bottom = axes[-1, 0]
    bottom.set_xticks((np.arange(shown) + 0.5) * time_steps,
                      [f"sample {i + 1}: label {labels[i]} → {predictions[i]}" for i in range(shown)], fontsize=8)
    bottom.set_xlabel(f"time step, T = {time_steps} per sample (red lines separate samples; label → prediction)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def plot_firing_rates(spikes: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Left: mean firing rate per population; right: how the rates of its neurons are spread.

    Rates are spikes per neuron and time step (0..1) over all recorded samples; "silent" neurons never fired,
    "saturated" ones fired every step (both carry no information about the input).
    """
    names = list(spikes)
    rates = {name: values.mean(axis=(0, 1)) for name, values in spikes.items()}  # (n,) per neuron
    figure, (mean_axis, spread_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    means = [float(rates[name].mean()) for name in names]
    bars = mean_axis.bar(names, means, color="tab:blue")
    for bar, name in zip(bars, names, strict=True):
        silent = float(np.mean(rates[name] == 0))
        saturated = float(np.mean(rates[name] == 1))
        mean_axis.annotate(f"{bar.get_height():.3f}\nsilent {silent:.0%}\nsaturated {saturated:.0%}",
                           (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                           fontsize=8)
    mean_axis.set(ylabel="spikes per neuron and step", title="mean firing rate per population",
                  ylim=(0, min(1.0, max(0.05, max(means) * 1.8))))
    bins = np.linspace(0, 1, 21)
    for name in names:
        spread_axis.hist(rates[name], bins=bins, histtype="step", linewidth=1.5, label=name,
                         weights=np.full(rates[name].shape, 100 / rates[name].size))
    spread_axis.set(xlabel="firing rate of a neuron (spikes per step)", ylabel="% of the population's neurons",
                    title="spread over neurons")
    spread_axis.legend(fontsize=8)
    for axis in (mean_axis, spread_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def plot_traces(records: dict[str, np.ndarray], path: Path, title: str) -> None:
    """One panel per recorded trace of one sample: spikes as a raster, v and u as a heat map (``simulate --input``).

    Args:
        records: "population.variable" → (T, n) per-step values; ".spikes" traces hold 0/1.
    """
    if not records:
        raise ValueError("plot_traces needs at least one trace")
    heights = [min(RASTER_NEURONS, values.shape[1]) for values in records.values()]
    figure, axes = plt.subplots(len(records), 1, figsize=(8, 1.2 + 2.0 * len(records)), squeeze=False,
                                gridspec_kw={"height_ratios": [max(h, 30) for h in heights]})
    for axis, (name, values), rows in zip(axes[:, 0], records.items(), heights, strict=True):
        time_steps, size = values.shape
        neurons = np.linspace(0, size - 1, rows).round().astype(int)
        image = np.asarray(values[:, neurons], dtype=np.float64).T
        subset = "" if rows == size else f" ({rows} evenly spaced shown)"
        extent = (0, time_steps, rows, 0)
        if name.endswith(".spikes"):
            shown = axis.imshow(image, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                                extent=extent)
            label = f"{int(values.sum())} spikes, {float(values.mean()):.3f} per neuron and step"
        else:
            bound = float(np.abs(image).max()) or 1.0
            shown = axis.imshow(image, aspect="auto", cmap="coolwarm", vmin=-bound, vmax=bound,
                                interpolation="nearest", extent=extent)
            label = f"range [{image.min():.4g}, {image.max():.4g}]"
        bar = figure.colorbar(shown, ax=axis, fraction=0.03, pad=0.01)  # on every panel: their time axes align
        if name.endswith(".spikes"):
            bar.set_ticks([0, 1])
        axis.set_title(f"{name}: {size} neurons{subset}; {label}", fontsize=9, loc="left")
        axis.set_ylabel("neuron", fontsize=8)
        axis.set_yticks([])
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("time step")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    _save(figure, path)
