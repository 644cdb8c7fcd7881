"""What a chapter of the book works on: the checkpoint, its data and its split.

This module is the one place where the book meets checkpoints. The pre-render step
(:mod:`recsys.report.prepare`) resolves the newest checkpoint and writes its path and identity
into a generated include; each chapter's hidden setup cell hands both to
:func:`open_chapter`, which checks that the checkpoint is still the one prepared and returns a
:class:`ReportContext` whose data and split are loaded on first use.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from recsys.checkpoint import (
    Checkpoint,
    checkpoint_identity,
    find_checkpoint,
    load_checkpoint,
    read_manifest,
)
from recsys.errors import CheckpointError
from recsys.pipeline import checkpoint_split
from recsys.preprocess import Dataset
from recsys.report.charts import enable_offline_charts
from recsys.report.datacache import load_cached_dataset
from recsys.report.evaluation import Comparison
from recsys.report.precompute import Artifacts
from recsys.splits import Split

log = logging.getLogger(__name__)

PROJECT_FILE: Final = "_quarto.yml"
# Quarto sets this for the code it executes and for its pre- and post-render scripts.
ENV_PROJECT_ROOT: Final = "QUARTO_PROJECT_ROOT"
CHECKPOINTS_DIR: Final = "checkpoints"


def project_root(start: str | Path | None = None) -> Path:
    """The book's root: ``$QUARTO_PROJECT_ROOT``, else the nearest folder with ``_quarto.yml``.

    The search starts at ``start`` (default: the working directory) and walks up.
    """
    named = os.environ.get(ENV_PROJECT_ROOT)
    if named:
        return Path(named).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise CheckpointError(f"no {PROJECT_FILE} here or above; expected to run inside the book",
                          path=here)


def resolve_checkpoint(root: str | Path) -> Path:
    """The checkpoint the book describes: ``$RECSYS_CHECKPOINT``, else the newest one.

    Raises :class:`~recsys.errors.CheckpointError` (one line, saying how to train one) when
    there is none.
    """
    return find_checkpoint(Path(root) / CHECKPOINTS_DIR)


def source_identity() -> str:
    """sha256 over the ``recsys`` package's Python sources, in path order.

    Charts are computed by this code, so a chapter's cached outputs are stale once it changes.
    """
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        digest.update(file.relative_to(package).as_posix().encode())
        digest.update(hashlib.sha256(file.read_bytes()).hexdigest().encode())
    return digest.hexdigest()


@dataclass
class ReportContext:
    """A checkpoint as the chapters see it; everything heavy is loaded on first use.

    Attributes
    ----------
    root
        The book's root folder.
    path
        The checkpoint directory.
    manifest
        The checkpoint's ``manifest.json``.
    """

    root: Path
    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def split_config(self) -> dict[str, Any]:
        """The ``[split]`` settings the checkpoint was trained with."""
        return dict(self.manifest["split"]["config"])

    @cached_property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint with its models loaded (in evaluation mode, on the CPU)."""
        return load_checkpoint(self.path)

    @cached_property
    def dataset(self) -> Dataset:
        """The data the checkpoint was trained on, checked against its fingerprint.

        Parsed from the source once per checkpoint, then read from a copy in the book's cache.
        """
        return load_cached_dataset(self._manifest_only(), root=self.root)

    @cached_property
    def split(self) -> Split:
        """The checkpoint's split, recomputed from its manifest and checked against its items."""
        return checkpoint_split(self._manifest_only(), self.dataset)

    @cached_property
    def artifacts(self) -> Artifacts:
        """The primary model's view of every user (encoder, top-K, entropy), cached on disk."""
        from recsys.report.precompute import load_artifacts

        return load_artifacts(self.checkpoint, self.dataset, self.split, root=self.root)

    @cached_property
    def comparison(self) -> Comparison:
        """Every model and baseline scored on the test users at K = 1..100, cached on disk."""
        from recsys.report.evaluation import load_comparison

        return load_comparison(self.checkpoint, self.dataset, self.split, root=self.root)

    def _manifest_only(self) -> Checkpoint:
        """The checkpoint without its weights, for what needs only the manifest."""
        return Checkpoint(self.path, self.manifest, models={})


def load_context(root: str | Path, checkpoint: str | Path) -> ReportContext:
    """Open ``checkpoint`` (a path, relative to ``root`` unless absolute) for the chapters."""
    root = Path(root)
    path = Path(checkpoint)
    if not path.is_absolute():
        path = root / path
    return ReportContext(root, path, read_manifest(path))


def open_chapter(checkpoint: str, identity: str) -> ReportContext:
    """Set a chapter up: offline charts on, and the checkpoint that the book was prepared for.

    ``checkpoint`` and ``identity`` come from the generated include. A checkpoint whose files
    changed since then is refused, so a chapter never mixes two checkpoints.
    """
    enable_offline_charts()
    context = load_context(project_root(), checkpoint)
    found = checkpoint_identity(context.path)
    if found != identity:
        raise CheckpointError(f"checkpoint identity {found[:12]} differs from the prepared "
                              f"{identity[:12]}; expected the prepared checkpoint (render again)",
                              path=context.path)
    log.info("chapter uses checkpoint %s", context.path)
    return context
