"""A checkpoint's data kept on disk as arrays, so that each chapter need not parse it again.

Every chapter runs in its own kernel, and most of them need the checkpoint's data. Reading and
preprocessing the source file is then the slowest thing they do at scale: tens of seconds for
ten million ratings, with a passing peak of about twice the data's size in memory.
:func:`load_cached_dataset` stores the preprocessed :class:`~recsys.preprocess.Dataset` once,
as plain arrays in an ``.npz`` file under ``.cache/recsys/``, and reads it back in seconds.

The file's name is keyed by the source folder's files (name, size, modification time), the
checkpoint's data settings and fingerprint, and the code that builds a dataset. What is read
back is checked against the checkpoint's fingerprint like a fresh load; a file that fails the
check is ignored and the source is parsed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

import recsys
from recsys.checkpoint import Checkpoint
from recsys.pipeline import configured_data_path, load_checkpoint_dataset
from recsys.preprocess import Dataset, Preprocessing, fingerprint
from recsys.report.precompute import cache_file, save_atomic

log = logging.getLogger(__name__)

# The modules whose code decides what a dataset holds.
BUILDERS: Final = ("data.py", "preprocess.py", "pipeline.py")
# Bumped when the stored arrays change meaning, so an old file is never read as a new one.
_FORMAT: Final = "dataset-1"
_TEXT_ARRAYS: Final = ("user_ids", "item_ids", "titles")


def cache_key(checkpoint: Checkpoint) -> str:
    """sha256 of the source files' names, sizes and times, the data settings and the code."""
    source = configured_data_path(checkpoint).resolve()
    folder = source if source.is_dir() else source.parent
    digest = hashlib.sha256(f"{_FORMAT}\n{recsys.__version__}\n{source}\n".encode())
    digest.update(json.dumps(checkpoint.manifest["data"], sort_keys=True).encode())
    for file in sorted(path for path in folder.iterdir() if path.is_file()):
        stat = file.stat()
        digest.update(f"\n{file.name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    package = Path(recsys.__file__).parent
    for name in BUILDERS:
        digest.update(hashlib.sha256((package / name).read_bytes()).digest())
    return digest.hexdigest()


def load_cached_dataset(checkpoint: Checkpoint, root: str | Path = ".") -> Dataset:
    """The checkpoint's data, from the on-disk copy or loaded (and checked) and then stored."""
    path = cache_file(root, "dataset", cache_key(checkpoint))
    if path.is_file():
        dataset = _read(path)
        if fingerprint(dataset) == checkpoint.fingerprint:
            log.info("dataset from cache %s", path)
            return dataset
        log.warning("cached dataset %s does not match the checkpoint's fingerprint; "
                    "reading the source again", path)

    dataset = load_checkpoint_dataset(checkpoint)
    save_atomic(path, _arrays(dataset))
    return dataset


def _arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """``dataset`` as arrays; its settings and names travel as one JSON string."""
    meta = {"source": dataset.source, "titles_source": dataset.titles_source,
            "preprocessing": asdict(dataset.preprocessing),
            "columns": list(dataset.interactions.columns)}
    columns = {f"column_{name}": dataset.interactions[name].to_numpy()
               for name in dataset.interactions.columns}
    texts = {name: np.asarray(getattr(dataset, name), dtype=str) for name in _TEXT_ARRAYS}
    return {"meta": np.array(json.dumps(meta)), "ratings": dataset.ratings, **texts, **columns}


def _read(path: Path) -> Dataset:
    """A :class:`Dataset` from a file written by :func:`_write`; text as Python strings."""
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        interactions = pd.DataFrame({name: stored[f"column_{name}"]
                                     for name in meta["columns"]})
        texts = {name: np.array(stored[name].tolist(), dtype=object) for name in _TEXT_ARRAYS}
        ratings = stored["ratings"]
    return Dataset(interactions=interactions, ratings=ratings, source=meta["source"],
                   preprocessing=Preprocessing(**meta["preprocessing"]),
                   titles_source=meta["titles_source"], **texts)
