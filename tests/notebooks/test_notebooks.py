"""Every study notebook runs top to bottom in its small mode and writes its figures."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9]*.ipynb"))
# notebooks on the pretrained transformer: they need its checkpoint and the retrieval pairs
NEEDS_MODELS = {"05_transformer"}
MODELS_DIR = Path(os.environ.get("GEMMFI_MODELS_DIR") or NB_DIR.parents[1] / "shared" / "models")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    if path.stem in NEEDS_MODELS and not (MODELS_DIR / "retrieval_pairs.jsonl").exists():
        pytest.skip(f"{path.stem} needs the MiniLM checkpoint and pairs in {MODELS_DIR} (GEMMFI_MODELS_DIR)")
    monkeypatch.delenv("GEMMFI_FULL", raising=False)
    nb = nbformat.read(path, as_version=4)
    # run in a scratch copy of the folder's layout so the committed figures are untouched
    work = tmp_path / "nb"
    work.mkdir()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    figures = sorted(p.name for p in (work / "figures").glob("*.png"))
    assert figures, "a study notebook must save its figures under figures/"
    committed = {p.name for p in (NB_DIR / "figures").glob("*.png")}
    assert set(figures) <= committed, f"figures not committed: {set(figures) - committed}"
