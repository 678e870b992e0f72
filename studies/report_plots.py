"""The accuracy report's plots: QWK per item, training curves, confusion matrices."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from studies.report_data import ItemResult, other_backbones


def _grid(count: int, size: float = 3.2) -> tuple[Figure, list[Axes]]:
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    flat = list(axes.ravel())
    for unused in flat[count:]:
        unused.set_visible(False)
    return figure, flat[:count]


def _save(figure: Figure, path: Path, top: float = 1.0) -> None:
    figure.tight_layout(rect=(0, 0, 1, top))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_qwk(items: list[ItemResult], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(items)), 4))
    series = [
        ("LoRA adapter", [(i, item.metrics["test"]["qwk"]) for i, item in enumerate(items)]),
        *[(f"LoRA on {name}", [(i, value) for i, item in enumerate(items) if (value := item.other_qwk(name))
                               is not None]) for name in other_backbones(items)],
        ("full fine-tuning", [(i, item.full["test"]["qwk"]) for i, item in enumerate(items) if item.full]),
        ("human", [(i, item.human) for i, item in enumerate(items) if item.human is not None]),
    ]
    width = 0.8 / len(series)
    for number, (label, points) in enumerate(series):
        offset = (number - (len(series) - 1) / 2) * width
        if points:
            axes.bar([i + offset for i, _ in points], [value for _, value in points], width, label=label,
                     color=f"C{number}")
    axes.set_xticks(range(len(items)), [item.item_id for item in items], rotation=45)
    axes.set_ylabel("test QWK")
    # QWK can fall below chance (negative) on a badly trained item; keep such bars visible.
    axes.set_ylim(min([0.0, *(value for _, points in series for _, value in points)]), 1)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False)
    _save(figure, path)


def plot_curves(items: list[ItemResult], path: Path) -> None:
    figure, grid = _grid(len(items))
    for axes, item in zip(grid, items, strict=True):
        curve = item.metrics["curve"]
        epochs = [point["epoch"] for point in curve]
        axes.plot(epochs, [point["val_qwk"] for point in curve], "k-o", label="val QWK")
        losses = axes.twinx()
        losses.plot(epochs, [point["train_loss"] for point in curve], "b--", label="train loss")
        losses.plot(epochs, [point["val_loss"] for point in curve], "r--", label="val loss")
        axes.set_title(item.item_id)
        axes.set_xlabel("epoch")
        axes.set_ylabel("val QWK")
        losses.set_ylabel("loss")
        if axes is grid[0]:
            figure.legend(handles=[*axes.lines, *losses.lines], loc="upper center", ncol=3, frameon=False)
    _save(figure, path, top=0.88)


def plot_confusions(items: list[ItemResult], path: Path) -> None:
    figure, grid = _grid(len(items))
    for axes, item in zip(grid, items, strict=True):
        matrix = item.metrics["test"]["confusion"]
        labels = list(range(item.low, item.high + 1))
        axes.imshow(matrix, cmap="Blues")
        darkest = max(max(counts) for counts in matrix)
        for row, counts in enumerate(matrix):
            for column, count in enumerate(counts):
                color = "white" if count > darkest / 2 else "black"
                axes.text(column, row, str(count), ha="center", va="center", fontsize=8, color=color)
        axes.set_xticks(range(len(labels)), [str(label) for label in labels])
        axes.set_yticks(range(len(labels)), [str(label) for label in labels])
        axes.set_xlabel("predicted")
        axes.set_ylabel("human")
        axes.set_title(item.item_id)
    _save(figure, path)
