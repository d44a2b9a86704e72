from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.ipynb"))
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.parametrize("notebook", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_executes(notebook, tmp_path, monkeypatch):
    nb = nbformat.read(notebook, as_version=4)
    # A notebook that reads ../shared/data lists the files in its metadata; it finds them through
    # SCSSL_SHARED_DATA (it runs in a temporary folder) and is skipped when they are absent.
    for name in nb.metadata.get("scssl", {}).get("shared_data", []):
        if not (SHARED_DATA / name).exists():
            pytest.skip(f"{SHARED_DATA / name} is absent (../shared/data: dev checkout only)")
    monkeypatch.setenv("SCSSL_SHARED_DATA", str(SHARED_DATA.resolve()))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
