"""Plots of benchmark results."""

from __future__ import annotations

import numpy as np

#: How metrics are named in plots and reports.
METRIC_LABELS = {
    "total": "scib total",
    "bio_conservation": "bio conservation",
    "batch_correction": "batch correction",
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "weighted_explained_variance": "weighted explained variance",
    "mse": "MSE",
    "pearson_flattened": "Pearson r",
    "pearson_mean_per_protein": "Pearson r per protein",
    "pearson_mean_per_cell": "Pearson r per cell",
    "spearman_flattened": "Spearman rho",
    "epochs": "epochs",
    "seconds": "seconds",
}


def benchmark_scores(result, metrics=None, ax=None, title: str | None = None):
    """Grouped bar chart of a benchmark's scores, one group per metric, one bar per method.

    Parameters
    ----------
    result
        A :class:`scssl.benchmark.BenchmarkResult` or its dict (``results.json``).
    metrics
        Metrics to show (default: all of the result's metrics).
    ax
        Matplotlib axes to draw into; a new figure when ``None``.
    title
        Title (default: task and dataset).

    Returns
    -------
    The matplotlib figure.

    """
    import matplotlib.pyplot as plt

    if not isinstance(result, dict):
        if not hasattr(result, "to_dict"):
            raise TypeError(
                "result must be a scssl.benchmark.BenchmarkResult or its dict (results.json), "
                f"got {type(result).__name__}."
            )
        result = result.to_dict()
    metrics = list(metrics or result["metrics"])
    rows = result["rows"]
    if not rows:
        raise ValueError("The result has no rows to plot.")
    if not metrics:
        raise ValueError("No metrics to plot.")
    unknown = [m for m in metrics if m not in rows[0]]
    if unknown:
        raise ValueError(f"Metrics {unknown} are not in the result (have {list(rows[0])}).")
    if ax is None:
        figure, ax = plt.subplots(figsize=(1.6 + 1.3 * len(metrics) * max(1, len(rows)) / 3, 3.6))
    else:
        figure = ax.figure
    width = 0.8 / len(rows)
    positions = np.arange(len(metrics))
    for i, row in enumerate(rows):
        values = [np.nan if row.get(m) is None else row[m] for m in metrics]
        bars = ax.bar(
            positions + (i - (len(rows) - 1) / 2) * width,
            values,
            width,
            label=row.get("name", row["method"]),
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    # Long names wrap onto two lines so that neighbouring groups' labels do not overlap.
    labels = [METRIC_LABELS.get(m, m).replace(" per ", "\nper ") for m in metrics]
    ax.set_xticks(positions, labels)
    ax.set_ylabel("score")
    ax.set_title(title or f"{result['task']} on {result['dataset']}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure
