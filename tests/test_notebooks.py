"""The notebooks in ``notebooks/`` are in sync with their jupytext sources and run.

Each notebook is a jupytext pair: ``name.py`` (percent format) is the reviewed source,
``name.ipynb`` is generated from it (``jupytext --sync notebooks/name.py``) and committed.
Here every ``.ipynb`` is executed top to bottom in a fresh kernel with ``SMOKE=1``, which
the notebooks read to pick tiny sizes, so a notebook that breaks fails ``pytest``.
This is what ``pytest --nbmake notebooks/`` does, without needing the flag.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted(p for p in NB_DIR.glob("*.py") if not p.name.startswith("_"))
CELL_TIMEOUT_S = 120


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert SOURCES, f"no jupytext sources in {NB_DIR}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_in_sync_with_jupytext_source(src):
    jupytext = pytest.importorskip("jupytext")
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `jupytext --sync {src.relative_to(ROOT)}`"
    from_py = jupytext.read(src)
    committed = jupytext.read(ipynb)
    assert _cells(committed) == _cells(from_py), (
        f"{ipynb.name} is out of date with {src.name}: run `jupytext --sync {src.relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(src, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SMOKE", "1")            # tiny sizes (the notebooks read SMOKE / FAST / CI)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the repository root first on the kernel's path, so an un-installed checkout works too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OSD_NOTEBOOK_OUT", str(tmp_path))  # where a notebook may write files
    nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
