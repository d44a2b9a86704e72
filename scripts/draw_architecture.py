"""Draw docs/_static/architecture.png: scssl's layers and the way data flows through them.

python scripts/draw_architecture.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).parents[1] / "docs" / "_static" / "architecture.png"

# (row from the bottom, packages in that layer, what the layer owns)
LAYERS = [
    (
        0,
        ["nn", "data", "checkpoints", "metrics", "datasets"],
        "torch blocks; cells -> tensors; weight files; scores; public data",
    ),
    (1, ["module", "train"], "scvi-tools modules: inference and losses; callbacks"),
    (2, ["model"], "scvi-tools models: setup_anndata, train, get_latent_representation, save/load"),
    (3, ["io", "tl"], "portable files, model cards, hub; scanpy-style tools writing obsm/obs/uns"),
    (4, ["benchmark", "pl"], "tasks, baselines, reports; plots of results"),
    (5, ["cli"], "the scssl command"),
]
COLOURS = ["#dbe9f6", "#d5ecd4", "#fde7c8", "#f4d6e4", "#e4dcf1", "#eeeeee"]


def main() -> None:
    """Draw the layer diagram to docs/_static/architecture.png."""
    figure, ax = plt.subplots(figsize=(10, 6.2))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.6, 6.4)
    ax.axis("off")
    for row, packages, text in LAYERS:
        y = row + 0.1
        width = 5.6 / len(packages)
        for i, name in enumerate(packages):
            x = 0.2 + i * width
            box = FancyBboxPatch(
                (x, y), width - 0.15, 0.7, boxstyle="round,pad=0.02", fc=COLOURS[row], ec="0.3"
            )
            ax.add_patch(box)
            ax.text(x + (width - 0.15) / 2, y + 0.35, name, ha="center", va="center", fontsize=11)
        ax.text(6.0, y + 0.35, text, va="center", fontsize=8.5, wrap=True)
        if row:
            ax.add_patch(
                FancyArrowPatch((3.0, y), (3.0, y - 0.3), arrowstyle="-|>", mutation_scale=12)
            )
    ax.text(
        0.2,
        -0.45,
        "Imports only go down (an arrow: 'uses'). AnnData/MuData -> data (align genes, normalise, "
        "minibatch) -> module -> model -> tl (writes .obsm/.obs/.uns)",
        fontsize=8.5,
    )
    ax.set_title("scssl: layers, from torch blocks (bottom) to the command line (top)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT, dpi=130, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
