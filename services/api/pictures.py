"""Pictures people would rather look at than read: confusion matrices, learning curves.

Rendering takes the CPU for a while, so it runs in a small thread pool of its
own, never on the event loop, and only for bounded sizes: a confusion matrix
with more than ``MAX_CLASSES`` classes, or curves of more than ``MAX_METRICS``
metrics, are refused (422); curves longer than ``MAX_POINTS`` epochs are
downsampled to about that many points (the last epoch always drawn). Figures
come from ``matplotlib.figure.Figure``, not pyplot, whose global state is not
safe across threads.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

from matplotlib.figure import Figure

from services.api.problems import Problem

MAX_CLASSES = 100
MAX_METRICS = 16
MAX_POINTS = 10_000

# Two renders at a time: pictures must not take every core from the API.
_renderers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="picture")


async def confusion_matrix_png(matrix: list[list[int]], title: str) -> bytes:
    if len(matrix) > MAX_CLASSES or any(len(row) > MAX_CLASSES for row in matrix):
        raise Problem(
            422,
            "Invalid request",
            f"the confusion matrix has more than {MAX_CLASSES} classes, too many to draw; read it from the result",
            field="result_id",
        )
    return await asyncio.get_running_loop().run_in_executor(_renderers, _draw_confusion_matrix, matrix, title)


async def curves_png(train: dict[str, list[float | None]], val: dict[str, list[float | None]], title: str) -> bytes:
    names = sorted(set(train) | set(val))
    if len(names) > MAX_METRICS:
        raise Problem(
            422,
            "Invalid request",
            f"the result has {len(names)} metrics, more than the {MAX_METRICS} one picture draws",
            field="result_id",
        )
    return await asyncio.get_running_loop().run_in_executor(_renderers, _draw_curves, names, train, val, title)


def downsample(series: list[float | None]) -> tuple[list[int], list[float]]:
    """Epoch numbers (from 1) and values of at most about MAX_POINTS points; NaN leaves a gap."""
    step = -(-len(series) // MAX_POINTS)  # ceiling division: 1 while the series is short enough
    epochs = list(range(0, len(series), step))
    if epochs and epochs[-1] != len(series) - 1:
        epochs.append(len(series) - 1)
    picked = [series[i] for i in epochs]
    values = [float("nan") if v is None else v for v in picked]
    return [i + 1 for i in epochs], values


def _draw_confusion_matrix(matrix: list[list[int]], title: str) -> bytes:
    size = len(matrix)
    figure = Figure(figsize=(1.0 + 0.6 * size, 0.8 + 0.6 * size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    peak = max((max(row) for row in matrix if row), default=0)
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


def _draw_curves(
    names: list[str], train: dict[str, list[float | None]], val: dict[str, list[float | None]], title: str
) -> bytes:
    figure = Figure(figsize=(4 * max(1, len(names)), 3.2), dpi=100)
    all_axes = figure.subplots(1, max(1, len(names)), squeeze=False)
    for axes, name in zip(all_axes[0], names, strict=False):
        for label, series in (("train", train.get(name)), ("validation", val.get(name))):
            if series:
                epochs, values = downsample(series)
                axes.plot(epochs, values, marker="o", markersize=3, label=label)
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.legend()
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
