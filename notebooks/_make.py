"""Build and execute the study notebooks from the cell sources in ``_sources/``.

Each ``_sources/NAME.py`` holds cells separated by lines ``# %%`` (code) or
``# %% [markdown]`` (markdown).  ``python notebooks/_make.py [NAME ...]`` writes
``NAME.ipynb`` and executes it in place (small mode unless GEMMFI_FULL=1), so the
committed notebooks carry their outputs and figures.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def cells_of(src: str):
    cells, kind, buf = [], None, []
    for line in src.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, "\n".join(buf).strip("\n")))
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        else:
            buf.append(line[2:] if kind == "markdown" and line.startswith("# ") else
                       ("" if kind == "markdown" and line == "#" else line))
    if kind is not None:
        cells.append((kind, "\n".join(buf).strip("\n")))
    return cells


def build(name: str, execute: bool = True, timeout: int = 900) -> Path:
    src = (HERE / "_sources" / f"{name}.py").read_text()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, text in cells_of(src):
        nb.cells.append(nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text))
    path = HERE / f"{name}.ipynb"
    if execute:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in (HERE / "_sources").glob("*.py"))
    for n in names:
        full = os.environ.get("GEMMFI_FULL") == "1"
        # a full study's chip loop is one long cell (20-25 minutes on two cores)
        print("built", build(n, timeout=3600 if full else 900), "(full)" if full else "(small)")
