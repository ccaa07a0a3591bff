"""Figures written into run dirs (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

LOG_SCALE_SPAN = 100.0  # a loss whose largest and smallest values differ by more than this gets a log axis


def training_figure(history: list[dict[str, float]], title: str, milestones: Sequence[int] = ()) -> Figure:
    """Loss and accuracy per epoch, train and test, side by side.

    Epochs are integers on the axis; the loss axis is logarithmic when the loss spans more than two decades (else
    the last epochs are a flat line at the bottom); a dotted line marks each learning-rate milestone, between the
    last epoch at the old rate and the first at the new one.
    """
    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    losses = {"train": [h["train_loss"] for h in history], "test": [h["test_loss"] for h in history]}
    loss_axis.plot(epochs, losses["train"], "o-", label="train")
    loss_axis.plot(epochs, losses["test"], "s-", label="test")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    positive = [value for values in losses.values() for value in values if value > 0]
    if positive and max(positive) > LOG_SCALE_SPAN * min(positive):
        loss_axis.set_yscale("log")
    accuracy_axis.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    accuracy_axis.plot(epochs, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    shown = [m for m in milestones if epochs and min(epochs) <= m < max(epochs)]
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        for index, milestone in enumerate(shown):
            axis.axvline(milestone + 0.5, color="grey", linestyle=":", linewidth=1,
                         label="learning-rate step" if index == 0 else None)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_training(history: list[dict[str, float]], path: Path, title: str, milestones: Sequence[int] = ()) -> None:
    """Write ``training_figure`` to ``path`` atomically (a crash leaves the previous figure)."""
    figure = training_figure(history, title, milestones)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        figure.savefig(temporary, dpi=110)
    finally:
        plt.close(figure)
    temporary.replace(path)
