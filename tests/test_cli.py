import anndata as ad
import pytest

from scssl.cli import main


def test_pretrain_then_embed(kang_demo, tmp_path):
    data = tmp_path / "cells.h5ad"
    kang_demo[:300].copy().write_h5ad(data)
    assert (
        main(
            [
                "pretrain",
                "--input",
                str(data),
                "--out",
                str(tmp_path / "model"),
                "--max-epochs",
                "1",
                "--n-latent",
                "8",
            ]
        )
        == 0
    )
    out = tmp_path / "embedded.h5ad"
    assert (
        main(
            [
                "embed",
                "--model",
                str(tmp_path / "model"),
                "--input",
                str(data),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert ad.read_h5ad(out).obsm["X_scssl"].shape == (300, 8)


def test_bad_input_gives_an_error_message_not_a_traceback(kang_demo, tmp_path, capsys):
    data = tmp_path / "lognorm.h5ad"
    adata = kang_demo[:50].copy()
    adata.X = adata.X * 0.5
    adata.write_h5ad(data)
    code = main(
        ["pretrain", "--input", str(data), "--out", str(tmp_path / "m"), "--max-epochs", "1"]
    )
    assert code == 2
    assert "non-integer values" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--max-epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "PCA-50" in printed and "macro F1" in printed
    assert (tmp_path / "umap_scssl.png").stat().st_size > 10_000
    assert (tmp_path / "model" / "model.pt").exists()


def test_benchmark_missing_keys_exit_2(kang_demo, tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    kang_demo[:200].copy().write_h5ad(data)
    common = ["benchmark", "--data", str(data), "--out", str(tmp_path / "out")]
    assert main([*common, "--task", "integration", "--label-key", "cell_type"]) == 2
    assert "needs batch_key (--batch-key" in capsys.readouterr().err
    assert main([*common, "--task", "integration", "--batch-key", "donor", "--label-key", "x"]) == 2
    assert "batch_key='donor' is not a column of obs" in capsys.readouterr().err
    assert main([*common, "--task", "label_transfer"]) == 2
    assert "needs label_key (--label-key" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "--data",
                "missing.h5ad",
                "--task",
                "reconstruction",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--data", str(data), "--task", "clustering", "--out", "x"])
    assert exit_info.value.code == 2


def test_benchmark_command_writes_report(kang_demo, tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    kang_demo[::10].copy().write_h5ad(data)  # both conditions
    out = tmp_path / "out"
    code = main(
        [
            "benchmark", "--data", str(data), "--task", "label_transfer",
            "--label-key", "cell_type", "--batch-key", "stim", "--methods", "pca", "logreg",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Task label_transfer on cells: 300 cells" in printed
    assert "logistic regression" in printed
    assert {p.name for p in out.iterdir()} == {"results.json", "report.md", "scores.png"}
