import anndata as ad

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
