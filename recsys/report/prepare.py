"""The book's pre-render step: resolve the checkpoint and write what the chapters need.

Quarto runs ``python -m recsys.report.prepare`` in the project folder before it renders. It
writes two generated files:

``report/_checkpoint.qmd``
    a hidden code cell holding the checkpoint's path and identity (sha256 of its files) and the
    identity of the analysis code. Every chapter includes it, so the code Quarto executes, and
    hence the key of its Jupyter cache, changes exactly when the checkpoint or the analysis
    code does: a new checkpoint re-executes every chapter, and an unchanged one none.
``report/assets/vega.js``
    Vega, Vega-Lite and Vega-Embed in one file, which every page loads from the site itself.

Before writing anything it checks the checkpoint the way the chapters will use it: a readable
manifest of the current version, weight files that match their sha256, the data it names
present and of the same fingerprint, and a latent space of at least two dimensions. Any problem
ends the build here with status 1 and one line, before a chapter runs; with no checkpoint that
line says how to train one.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from recsys.checkpoint import Checkpoint, checkpoint_identity, load_checkpoint
from recsys.data import resolve_interaction_file
from recsys.errors import CheckpointError, RecsysError
from recsys.pipeline import configured_data_path
from recsys.report.charts import write_bundle
from recsys.report.context import resolve_checkpoint, source_identity
from recsys.report.datacache import load_cached_dataset
from recsys.report.precompute import CACHE_DIR

log = logging.getLogger(__name__)

INCLUDE: Final = Path("report/_checkpoint.qmd")
ASSETS: Final = Path("report/assets")


@dataclass(frozen=True)
class Prepared:
    """What the pre-render step resolved and wrote."""

    checkpoint: Path
    identity: str
    include: Path
    bundle: Path


def include_text(checkpoint: str, identity: str, code_identity: str) -> str:
    """The generated include: one hidden cell that defines the chapter's checkpoint."""
    return (
        "<!-- Written by `python -m recsys.report.prepare` before each render. -->\n\n"
        "```{python}\n"
        "#| include: false\n"
        f"CHECKPOINT = {checkpoint!r}\n"
        f"CHECKPOINT_IDENTITY = {identity!r}\n"
        f"ANALYSIS_CODE_IDENTITY = {code_identity!r}\n"
        "```\n"
    )


def prepare(root: str | Path) -> Prepared:
    """Resolve the checkpoint for the book at ``root`` and write the generated files."""
    root = Path(root).resolve()
    checkpoint = resolve_checkpoint(root).resolve()
    identity = checkpoint_identity(checkpoint)
    check_checkpoint(root, checkpoint, identity)

    # A checkpoint inside the book is named relative to it, so the include moves with the book.
    shown = checkpoint.relative_to(root) if checkpoint.is_relative_to(root) else checkpoint
    include = root / INCLUDE
    text = include_text(shown.as_posix(), identity, source_identity())
    if not include.is_file() or include.read_text(encoding="utf-8") != text:
        include.parent.mkdir(parents=True, exist_ok=True)
        include.write_text(text, encoding="utf-8")
    log.info("book prepared for checkpoint %s (identity %s)", shown, identity[:12])
    return Prepared(checkpoint, identity, include, write_bundle(root / ASSETS))


def check_checkpoint(root: Path, checkpoint: Path, identity: str) -> None:
    """Refuse a checkpoint the chapters could not use; see the module docstring.

    Reloading the data is the slow part, so a successful check is remembered in a stamp file
    keyed by the checkpoint's identity and the data file's size and modification time.
    """
    loaded = load_checkpoint(checkpoint)
    for name, model in loaded.models.items():
        if model.config.latent_dim < 2:
            raise CheckpointError(f"latent_dim is {model.config.latent_dim} for {name}; the "
                                  "latent-space chapter expects at least 2",
                                  path=checkpoint, field="model.latent_dim")

    manifest_only = Checkpoint(checkpoint, loaded.manifest, models={})
    data_file = resolve_interaction_file(configured_data_path(manifest_only))
    stat = data_file.stat()
    key = hashlib.sha256(f"{identity}\n{data_file}\n{stat.st_size}\n{stat.st_mtime_ns}"
                         .encode()).hexdigest()[:32]
    stamp = root / CACHE_DIR / f"checked-{key}"
    if stamp.is_file():
        return
    # The check stores the data it read, so the chapters need not parse the source again.
    load_cached_dataset(manifest_only, root=root)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{checkpoint}\n{data_file}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m recsys.report.prepare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the book's folder, holding _quarto.yml (default: here)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare(args.root)
    except RecsysError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
