"""The one way reports draw their PNG: a 6x4 line chart on a 0-1 axis, saved without a display."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_line_plot(path: Path, draw: Callable[[Any], None], xlabel: str, ylabel: str, title: str) -> None:
    """`draw(axis)` adds the lines; this sets labels, a 0-1 y axis, grid and legend, and writes `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    draw(axis)
    axis.set_ylim(0, 1)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
