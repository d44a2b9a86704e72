"""Write a benchmark result as ``results.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from scssl.pl._benchmark import METRIC_LABELS

from ._result import BenchmarkResult


def _format(value, column: str = "") -> str:
    if value is None:
        return "-"
    if column in ("seconds", "epochs"):
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown_table(result: BenchmarkResult) -> str:
    """The scores as a markdown table (one row per method, best primary score in bold)."""
    trained = any(row.get("epochs") is not None for row in result.rows)
    columns = [*result.metrics, *(["epochs"] if trained else []), "seconds"]
    lower_is_better = {"mse", "seconds"}
    values = [row.get(result.primary) for row in result.rows if row.get(result.primary) is not None]
    best = None
    if values:
        best = min(values) if result.primary in lower_is_better else max(values)
    header = "| method | " + " | ".join(METRIC_LABELS.get(c, c) for c in columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]
    for row in result.rows:
        cells = []
        for column in columns:
            text = _format(row.get(column), column)
            if column == result.primary and row.get(column) == best:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {row.get('name', row['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(result: BenchmarkResult, plots: list[str] | None = None) -> str:
    """A markdown report: settings, the score table, notes and plots."""
    settings = ", ".join(f"{k}={v}" for k, v in result.settings.items() if v not in (None, {}))
    parts = [
        f"# scssl benchmark: {result.task} on {result.dataset}",
        "",
        f"Settings: {settings}.",
        "",
        markdown_table(result),
        "",
    ]
    parts += [f"- {note}" for note in result.notes]
    per_metric = result.details.get("per_metric")
    if per_metric:
        metrics = list(next(iter(per_metric.values())))
        parts += ["", "## scib-metrics, every metric", ""]
        parts.append("| method | " + " | ".join(metrics) + " |")
        parts.append("|---|" + "---|" * len(metrics))
        for method, scores in per_metric.items():
            parts.append(f"| {method} | " + " | ".join(_format(scores[m]) for m in metrics) + " |")
    per_split = result.details.get("per_split")
    if per_split and len(next(iter(per_split.values()))) > 1:
        parts += ["", "## Per split (macro F1)", ""]
        splits = [fold["split"] for fold in next(iter(per_split.values()))]
        parts.append("| method | " + " | ".join(splits) + " |")
        parts.append("|---|" + "---|" * len(splits))
        for method, folds in per_split.items():
            parts.append(
                f"| {method} | " + " | ".join(_format(f["macro_f1"]) for f in folds) + " |"
            )
    for plot in plots or []:
        parts += ["", f"![{Path(plot).stem}]({Path(plot).name})"]
    return "\n".join(parts) + "\n"


def write_report(result: BenchmarkResult, out: str | Path, plots: bool = True) -> list[Path]:
    """Write ``results.json``, ``report.md`` and (``plots=True``) ``scores.png`` into ``out``.

    Returns
    -------
    The paths written.

    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    pngs = []
    if plots:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from scssl.pl._benchmark import benchmark_scores

        figure = benchmark_scores(result)
        path = out / "scores.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        pngs.append(path)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    report_path = out / "report.md"
    report_path.write_text(markdown_report(result, [p.name for p in pngs]))
    written += [json_path, report_path, *pngs]
    return written
