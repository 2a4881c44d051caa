"""Execute every ``notebooks/*.ipynb`` top to bottom, as a user would on a fresh install.

Run with ``pytest -m notebooks`` (needs the ``notebooks`` extra: matplotlib, nbclient,
nbformat, ipykernel); without nbclient the tests skip with the reason.  Each notebook runs in
its own kernel, started from *this* interpreter (a throw-away kernel spec pointing at
``sys.executable``, so a user-level ``python3`` spec for another Python cannot hijack it), in a
temporary working directory, with ``MPLBACKEND=Agg``, the built-in dataset cached in a
temporary ``XDG_CACHE_HOME`` and ``OPENBLAS_NUM_THREADS=1`` (unless already set).
``FASTRNN_COCO_DIR`` is passed through: set it to run the captioning notebooks on the real
COCO files.

A failing cell fails the test with the cell's traceback.  Warnings raised inside the kernel stay
there (the notebooks' own cells decide what is an error); jupyter's deprecation chatter in this
process is ignored for these tests only, so ``filterwarnings = error`` still guards the library.
"""
import importlib.util
import json
import os
import pathlib
import sys
import time
import warnings

import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = int(os.environ.get("FASTRNN_NOTEBOOK_CELL_TIMEOUT", "600"))
KERNEL_NAME = "fastrnn-test-python"

# ``notebooks`` is registered in pyproject's [tool.pytest.ini_options] markers; the guard keeps
# collection working (filterwarnings = error) in a checkout whose config predates that line.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    notebooks_mark = pytest.mark.notebooks

JUPYTER_NOISE = [
    "ignore::DeprecationWarning",
    "ignore::PendingDeprecationWarning",
    "ignore::ResourceWarning",  # zmq sockets / event loops closed at garbage collection
    "ignore::pytest.PytestUnraisableExceptionWarning",
]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_match_sources():
    """The committed .ipynb files are exactly what ``notebooks/build_notebooks.py`` writes
    from ``notebooks/sources/`` (no stale notebook, no stored outputs)."""
    pytest.importorskip("nbformat", reason="the notebooks extra (nbformat) is not installed")
    builder = _load_builder()
    pairs = builder.targets()
    assert pairs, "no notebook sources found"
    assert sorted(notebook for _, notebook in pairs) == NOTEBOOKS, \
        "every notebooks/*.ipynb must have a source in notebooks/sources/ (and vice versa)"
    stale = [notebook.name for src, notebook in pairs
             if notebook.read_text(encoding="utf-8") != builder.render(src)]
    assert not stale, f"regenerate with `python notebooks/build_notebooks.py`: {stale}"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernel spec for this interpreter, and the environment the kernel inherits."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "fastrnn test kernel", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's migration warning
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        # On a busy 2-core box OpenBLAS's two threads spin against other processes: measured
        # 8-10x slower training steps for fastrnn and the NumPy reference alike.  The notebooks
        # check behaviour, not speed (03_speed reports its own thread settings).
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    return work_dir


@notebooks_mark
@pytest.mark.filterwarnings(*JUPYTER_NOISE)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env, record_property):
    nbclient = pytest.importorskip("nbclient", reason="the notebooks extra (nbclient) is not installed")
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra (nbformat) is not installed")
    pytest.importorskip("ipykernel", reason="the notebooks extra (ipykernel) is not installed")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(kernel_env)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the failing cell's traceback
    record_property("seconds", round(time.perf_counter() - start, 1))
