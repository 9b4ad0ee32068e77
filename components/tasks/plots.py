"""The pictures of a task's test predictions: a confusion matrix (classes), a scatter plot of
predicted against true (a score). PNG files, embedded in evaluate's page and logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, labels: list, path: Path, accuracy: float) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=100)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (acc {accuracy:.3f})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scatter(y: np.ndarray, pred: np.ndarray, path: Path, pearson: float, rmse: float, name: str = "score") -> None:
    """Predicted against true test targets, the diagonal y = x marked (a perfect model lies on it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4), dpi=100)
    ax.scatter(y, pred, s=8, alpha=0.5, color="tab:blue", edgecolors="none")
    both = np.concatenate([y, pred]) if len(y) else np.zeros(1)
    low, high = float(both.min()), float(both.max())
    ax.plot([low, high], [low, high], color="black", lw=1, ls="--")
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"test predictions (Pearson {pearson:.3f}, RMSE {rmse:.3f})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
