"""The navigation notebook runs headless, top to bottom, on the tiny variant: the embedded trained
model on the default world, scored against its ground truth."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_navigate_notebook_executes():
    nbformat = pytest.importorskip("nbformat")  # here, not at collection: ~1 s of imports per xdist worker
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "navigate.ipynb"), as_version=4)
    # timeout per cell: the two-block cell compiles everything; it took 380 s on a 2-core CPU loaded 6x over
    nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "block 0: 9 frames" in text and "block 1: 12 frames" in text
    assert "tiny_model" in text and "hashed words" in text  # the embedded model, its caption embedded
    assert "PSNR against the ground truth: all" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2
