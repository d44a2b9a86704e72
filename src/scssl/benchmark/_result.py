"""The result of a benchmark task: :class:`BenchmarkResult`, and reading it back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scssl._json import jsonable


@dataclass
class BenchmarkResult:
    """Scores of one task on one dataset.

    Attributes
    ----------
    task
        Task name (a key of :data:`scssl.benchmark.TASKS`).
    dataset
        Name of the data (file name or given name).
    rows
        One dict per method: ``{"method": name, <metric>: value, ...}``.
    metrics
        Metric columns in report order.
    primary
        The metric that ranks methods (plotted first).
    settings
        Options the task ran with (cells, genes, keys, epochs, seed ...).
    notes
        Sentences for the report (what was run, what was skipped and why).
    details
        Further task-specific results (per-fold scores, per-metric scib tables).

    """

    task: str
    dataset: str
    rows: list[dict]
    metrics: list[str]
    primary: str
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return jsonable(asdict(self))

    def row(self, method: str) -> dict:
        """The row of ``method``."""
        for row in self.rows:
            if row["method"] == method:
                return row
        raise KeyError(f"No row for method {method!r}; methods: {[r['method'] for r in self.rows]}")


def load_results(path: str | Path) -> BenchmarkResult:
    """Read a ``results.json`` written by :func:`scssl.benchmark.run_benchmark`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    return BenchmarkResult(**json.loads(path.read_text()))
