"""Pictures people would rather look at than read: confusion matrices, learning curves."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def confusion_matrix_png(matrix: list[list[int]], title: str) -> bytes:
    size = len(matrix)
    figure, axes = plt.subplots(figsize=(1.0 + 0.6 * size, 0.8 + 0.6 * size), dpi=100)
    try:
        image = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        peak = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                colour = "white" if peak and value > peak / 2 else "black"
                axes.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=8)
        axes.set_xticks(range(size))
        axes.set_yticks(range(size))
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title)
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)


def curves_png(train: dict[str, list[float | None]], val: dict[str, list[float | None]], title: str) -> bytes:
    names = sorted(set(train) | set(val))
    figure, all_axes = plt.subplots(
        1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.2), dpi=100, squeeze=False
    )
    try:
        for axes, name in zip(all_axes[0], names, strict=False):
            for label, series in (("train", train.get(name)), ("validation", val.get(name))):
                if series:
                    values = [float("nan") if v is None else v for v in series]  # a gap where NaN was
                    axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
            axes.set_title(name)
            axes.set_xlabel("epoch")
            axes.legend()
            axes.grid(alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
