"""Time, page weight and kernel memory of every chapter of the book, against one checkpoint.

Run by hand from the project root (it is not a test)::

    python benchmarks/book_scale.py --checkpoint .cache/scale-checkpoints/synth-1epoch
    python benchmarks/book_scale.py --checkpoint PATH --chapters splits predictions --keep-cache

The book's sources are copied into a scratch folder (``--work``, default
``.cache/book-scale/``) with ``data/`` linked beside them, so the project's own generated
files are left alone. The pre-render step runs there with ``$RECSYS_CHECKPOINT`` set, then
each chapter is executed on a fresh Jupyter kernel exactly as
:func:`recsys.report.execute.execute_chapter` does, with one cell appended that reports the
kernel's peak resident memory (``VmHWM``). Per chapter the table gives the wall time, the bytes its
outputs add to the page (as the tests count them) and that peak; ``--cells`` adds the slowest
cells. Per-checkpoint caches (``.cache/recsys/`` in the scratch folder) are cleared first
unless ``--keep-cache`` is given, so the chapters that build them pay for it. The
``(prepare)`` row is the pre-render step, run in this script's own process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from recsys.report import execute
from recsys.report.context import ENV_PROJECT_ROOT
from recsys.report.prepare import prepare

ROOT = Path(__file__).resolve().parent.parent
BOOK_FILES = ("_quarto.yml", "index.qmd", "report")
GENERATED = ("_checkpoint.qmd", "assets")
# VmHWM belongs to the kernel's own address space; its ru_maxrss would carry over the peak of
# the process that started it, which is this one.
PEAK_CELL = "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')))"


def copy_book(target: Path, keep_cache: bool) -> Path:
    """The book's sources in ``target`` (generated files left out), ``data/`` linked."""
    cache = target / ".cache"
    if target.exists():
        for child in target.iterdir():
            if child == cache and keep_cache:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns(*GENERATED))
        else:
            shutil.copy(source, target / name)
    (target / "data").symlink_to(ROOT / "data")
    return target


def run_chapter(path: Path, root: Path, timeout: int) -> dict[str, Any]:
    """Execute one chapter as ``execute_chapter`` does, plus a last cell reading the peak."""
    chapter = execute.parse_chapter(path, root)
    notebook = execute.to_notebook(chapter)
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(notebook, timeout=timeout, kernel_name=execute.KERNEL,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    peak_text = "".join(output.get("text", "") for output in code[-1].outputs)
    executed = execute.ExecutedChapter(chapter, [cell.outputs for cell in code[:-1]])
    return {
        "chapter": path.relative_to(root).as_posix(),
        "seconds": seconds,
        "page_bytes": executed.page_bytes(),
        "peak_rss_gb": int(peak_text.split()[1]) * 1024 / 1e9,
        "problems": execute.output_problems(executed),
        "cells": sorted(((_cell_seconds(cell), cell.source.splitlines()[-1][:70])
                         for cell in code[:-1]), reverse=True)[:3],
    }


def _cell_seconds(cell: Any) -> float:
    """A cell's execution time from the timestamps nbclient records."""
    timing = cell.metadata.get("execution", {})
    begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if begin is None or end is None:
        return float("nan")
    return (datetime.fromisoformat(end.rstrip("Z")) -
            datetime.fromisoformat(begin.rstrip("Z"))).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="the checkpoint directory the book is executed against")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "book-scale",
                        help="scratch folder for the copied book (default .cache/book-scale)")
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapter stems to run (default: every chapter, in book order)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="reuse the scratch book's per-checkpoint caches")
    parser.add_argument("--cells", action="store_true", help="show each chapter's slowest cells")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    root = copy_book(args.work.resolve(), args.keep_cache)
    os.environ["RECSYS_CHECKPOINT"] = str(args.checkpoint.resolve())
    os.environ[ENV_PROJECT_ROOT] = str(root)
    start = time.perf_counter()
    prepare(root)
    rows: list[dict[str, Any]] = [{
        "chapter": "(prepare)", "seconds": time.perf_counter() - start, "page_bytes": 0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "problems": [], "cells": []}]

    print(f"{'chapter':<24}{'seconds':>9}{'page bytes':>13}{'peak RSS GB':>13}", flush=True)
    for path in execute.book_chapters(root):
        if args.chapters and path.stem not in args.chapters:
            continue
        rows.append(run_chapter(path, root, args.timeout))
        _print_row(rows[-1], args.cells)
    _print_row(rows[0], False)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any(row["problems"] for row in rows) else 0


def _print_row(row: dict[str, Any], cells: bool) -> None:
    print(f"{row['chapter']:<24}{row['seconds']:>9.1f}{row['page_bytes']:>13,}"
          f"{row['peak_rss_gb']:>13.2f}", flush=True)
    for problem in row["problems"]:
        print(f"    problem: {problem}", flush=True)
    for seconds, source in row["cells"] if cells else []:
        print(f"    {seconds:7.1f} s  {source}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
