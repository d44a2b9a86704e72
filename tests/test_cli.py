import json

import anndata as ad
import numpy as np
import pandas as pd
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
    other = tmp_path / "other.h5ad"
    common = ["embed", "--model", str(tmp_path / "model"), "--input", str(out)]
    assert main([*common, "--output", str(other), "--key-added", "X_ssl"]) == 0
    embedded = ad.read_h5ad(other)
    assert embedded.obsm["X_ssl"].shape == (300, 8)
    assert embedded.uns["ssl"]["params"]["key_added"] == "X_ssl"
    assert embedded.uns["scssl"]["params"]["key_added"] == "X_scssl"  # the first call's, kept


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
    assert (
        main(["demo", "--out", str(tmp_path), "--minutes", "0.05", "--finetune-epochs", "1"]) == 0
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert "PCA-50" in printed and "macro F1" in printed
    for noise in ("Tip", "GPU available", "Warning", "LitLogger"):
        assert noise not in captured.out + captured.err
    assert (tmp_path / "umap_scssl.png").stat().st_size > 10_000
    assert (tmp_path / "model" / "model.pt").exists()


def test_benchmark_missing_keys_exit_2(kang_demo, tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    kang_demo[:200].copy().write_h5ad(data)
    common = ["benchmark", "--data", str(data), "--out", str(tmp_path / "out")]
    assert main([*common, "--task", "integration", "--labels-key", "cell_type"]) == 2
    assert "needs batch_key (--batch-key" in capsys.readouterr().err
    assert (
        main([*common, "--task", "integration", "--batch-key", "donor", "--labels-key", "x"]) == 2
    )
    assert "batch_key='donor' is not a column of obs" in capsys.readouterr().err
    assert main([*common, "--task", "label_transfer"]) == 2
    assert "needs labels_key (--labels-key" in capsys.readouterr().err
    assert main([*common, "--task", "reconstruction", "--reference-key", "stim"]) == 2
    assert "--reference-key applies to the label_transfer task" in capsys.readouterr().err
    assert main([*common, "--task", "label_transfer", "--held-out", "0.2"]) == 2
    assert "--held-out applies to the protein and reconstruction tasks" in capsys.readouterr().err
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
            "--labels-key", "cell_type", "--batch-key", "stim", "--methods", "pca", "logreg",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Task label_transfer on cells: 300 cells" in printed
    assert "logistic regression" in printed
    assert {p.name for p in out.iterdir()} == {"results.json", "report.md", "scores.png"}


def test_benchmark_protein_from_h5mu(tmp_path, capsys):
    import mudata as md
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    programme = rng.integers(0, 3, size=150)
    rna = ad.AnnData(
        sp.csr_matrix(rng.poisson(rng.gamma(0.6, 2.0, (3, 80))[programme]).astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(150)]),
        var=pd.DataFrame(index=[f"G{i}" for i in range(80)]),
    )
    prot = ad.AnnData(
        rng.poisson(np.exp(1 + rng.normal(size=(3, 5)))[programme]).astype(np.float32),
        obs=rna.obs.copy(),
        var=pd.DataFrame(index=[f"P{i}" for i in range(5)]),
    )
    path = tmp_path / "citeseq.h5mu"
    md.MuData({"rna": rna, "adt": prot}).write_h5mu(str(path))
    out = tmp_path / "out"
    code = main(
        ["benchmark", "--data", str(path), "--task", "protein", "--methods", "ridge",
         "--held-out", "0.3", "--out", str(out), "--no-plots"]
    )  # fmt: skip
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert result["settings"]["protein_mod"] == "adt"
    assert result["settings"]["n_held_out"] == 45
    assert "ridge" in capsys.readouterr().out


def test_label_key_is_a_deprecated_alias(kang_demo, tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    kang_demo[::10].copy().write_h5ad(data)
    out = tmp_path / "out"
    with pytest.warns(FutureWarning, match="--label-key is deprecated; use --labels-key"):
        code = main(
            ["benchmark", "--data", str(data), "--task", "label_transfer", "--label-key",
             "cell_type", "--batch-key", "stim", "--methods", "pca", "--out", str(out),
             "--no-plots"]
        )  # fmt: skip
    assert code == 0
    assert json.loads((out / "results.json").read_text())["settings"]["labels_key"] == "cell_type"


@pytest.mark.parametrize("command", ["embed", "pretrain"])
@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("counts.csv", "anndata.read_csv"),
        ("cells.h5mu", "mudata.read_h5mu(path).mod['rna']"),
        ("folder", "is a directory"),
        ("cells.loom", "anndata.read_loom"),
    ],
)
def test_an_input_that_is_not_h5ad_gives_one_line(command, name, hint, tmp_path, capsys):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    else:
        path.write_text("cell,G0\nc0,1\n")
    model = tmp_path / "model"
    model.mkdir()
    if command == "embed":
        argv = ["embed", "--model", str(model), "--input", str(path), "--output", "out.h5ad"]
    else:
        argv = ["pretrain", "--input", str(path), "--out", str(model)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"scssl {command}: error: --input {path}")
    assert hint in err and ("write_h5ad" in err or name == "folder")


def test_embed_with_a_missing_model_folder(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    ad.AnnData(np.ones((2, 3), dtype=np.float32)).write_h5ad(data)
    argv = ["embed", "--model", str(tmp_path / "nope"), "--input", str(data), "--output", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--model {tmp_path / 'nope'} does not exist; pass the folder" in err


def test_pretrain_refuses_an_existing_folder_before_training(
    kang_demo, tmp_path, capsys, monkeypatch
):
    import scssl.model

    (tmp_path / "model").mkdir()
    kang_demo[:50].copy().write_h5ad(tmp_path / "cells.h5ad")
    trained = []
    monkeypatch.setattr(scssl.model.SSLEncoder, "train", lambda *a, **k: trained.append(1))
    argv = ["pretrain", "--input", str(tmp_path / "cells.h5ad"), "--out", str(tmp_path / "model")]
    assert main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err and not trained


def test_pretrain_data_errors_name_the_command_line_options(kang_demo, tmp_path, capsys):
    import scanpy as sc

    cells = kang_demo[:100].copy()
    sc.pp.normalize_total(cells)
    sc.pp.log1p(cells)
    cells.write_h5ad(tmp_path / "lognorm.h5ad")
    argv = ["pretrain", "--input", str(tmp_path / "lognorm.h5ad"), "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "non-integer" in err and "--layer NAME" in err and "--log-normalized" in err
