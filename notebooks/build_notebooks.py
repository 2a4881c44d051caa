"""Write ``notebooks/*.ipynb`` from the plain-Python sources in ``notebooks/sources/``.

The sources are the editable truth: "percent" scripts (the format of Jupytext, VS Code and
Spyder) in which ``# %%`` starts a code cell and ``# %% [markdown]`` starts a markdown cell
whose lines are comments (``# `` is stripped).  They diff and review like code; the .ipynb
files are generated, stored without outputs, with stable cell ids, so that rebuilding an
unchanged source gives byte-identical files (``tests/test_notebooks.py`` checks it).

    python notebooks/build_notebooks.py          # rewrite every notebook
    python notebooks/build_notebooks.py --check  # exit 1 if any .ipynb is stale
"""
import argparse
import pathlib
import re
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "sources"

_CELL_MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?\s*$")

METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def parse_percent(text):
    """Split a percent script into ``[(cell_type, source), ...]``; text before the first
    marker (a module docstring for the generator's readers) is dropped."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
        if body.strip():
            cells.append((kind, body))

    for line in text.splitlines():
        marker = _CELL_MARKER.match(line)
        if marker:
            flush()
            kind, lines = ("markdown" if marker.group("markdown") else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def build(source_path):
    """The notebook for one source file, as an ``nbformat`` v4 node (no outputs)."""
    stem = source_path.stem
    nb = nbformat.v4.new_notebook(metadata=METADATA)
    for number, (kind, body) in enumerate(parse_percent(source_path.read_text(encoding="utf-8"))):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        # Stable ids (nbformat >= 4.5 wants one per cell): rebuilding must not churn the files.
        nb.cells.append(make(body, id=f"{stem.split('_', 1)[-1]}-{number:02d}"))
    nbformat.validate(nb)
    return nb


def render(source_path):
    return nbformat.writes(build(source_path)) + "\n"


def targets():
    """``[(source, notebook), ...]`` for every source file."""
    return [(src, HERE / f"{src.stem}.ipynb") for src in sorted(SOURCES.glob("[0-9]*.py"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    for src, notebook in targets():
        text = render(src)
        current = notebook.read_text(encoding="utf-8") if notebook.exists() else None
        if current == text:
            continue
        stale.append(notebook.name)
        if not args.check:
            notebook.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "all notebooks up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
