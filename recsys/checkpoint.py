"""Checkpoints: safetensors weights beside a JSON manifest, written atomically.

A checkpoint is a directory ``checkpoints/<name>/`` holding ``manifest.json`` and one
``<model>.safetensors`` file per trained model. Loading never executes code from the files:
weights are plain tensors and the manifest is JSON. The manifest records the sha256 of every
weight file, so a truncated or altered file is refused before it is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recsys.errors import CheckpointError
from recsys.model import ModelConfig, MultVAE

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
ENV_CHECKPOINT = "RECSYS_CHECKPOINT"
REQUIRED_KEYS = ("manifest_version", "name", "created_at", "data", "split", "item_ids",
                 "models", "primary")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its manifest and its models, in evaluation mode."""

    path: Path
    manifest: dict[str, Any]
    models: dict[str, MultVAE]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def primary(self) -> MultVAE:
        """The checkpoint's main model (the Multi-VAE, unless trained otherwise)."""
        return self.models[self.manifest["primary"]]

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["data"]["fingerprint"])

    def identity(self) -> str:
        """sha256 over the manifest and weight files: changes whenever the checkpoint does."""
        return checkpoint_identity(self.path)


def save_checkpoint(
    root: str | Path, name: str, models: dict[str, MultVAE], manifest: dict[str, Any]
) -> Path:
    """Write ``root/name`` atomically; refuse to touch an existing checkpoint.

    Files are written into a hidden temporary directory beside the target, flushed to disk,
    and the directory is renamed into place in one step, so an interrupted write leaves no
    half-written checkpoint.
    """
    root = Path(root)
    target = root / name
    check_name(name)
    if target.exists():
        raise CheckpointError("checkpoint directory already exists; expected a new name "
                              "(pass --name)", path=target)
    root.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))
    try:
        manifest = {**manifest, "manifest_version": MANIFEST_VERSION, "name": name}
        manifest["models"] = {k: dict(v) for k, v in manifest["models"].items()}
        for model_name, model in models.items():
            file_name = f"{model_name}.safetensors"
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(staging / file_name))
            entry = manifest["models"][model_name]
            entry.update(file=file_name, sha256=_sha256(staging / file_name))
        _write_json(staging / MANIFEST, manifest)

        # mkdtemp makes a private directory; a checkpoint is meant to be shared and committed.
        for file in staging.iterdir():
            file.chmod(0o644)
        staging.chmod(0o755)
        _fsync_dir(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(root)
    log.info("wrote checkpoint %s", target)
    return target


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`."""
    path = Path(path)
    manifest = read_manifest(path)
    models = {}
    for model_name, entry in manifest["models"].items():
        weights = path / entry["file"]
        if not weights.is_file():
            raise CheckpointError("weight file is missing; expected it beside manifest.json",
                                  path=weights)
        if _sha256(weights) != entry["sha256"]:
            raise CheckpointError("weight file does not match its sha256 in manifest.json "
                                  "(truncated or altered); expected the file as saved",
                                  path=weights)
        try:
            state = load_file(str(weights), device=device)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read weights ({error}); expected a safetensors "
                                  "file", path=weights) from None
        model = MultVAE(ModelConfig.from_dict(entry["config"]))
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            detail = " ".join(str(error).split("\n", 1)[-1].split())[:200]
            raise CheckpointError(f"weights do not fit the model in manifest.json ({detail})",
                                  path=weights) from None
        models[model_name] = model.to(device).eval()
    return Checkpoint(path, manifest, models)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a checkpoint directory."""
    path = Path(path)
    file = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError("checkpoint not found; expected a directory holding "
                              "manifest.json", path=path)
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("no manifest.json; expected a checkpoint written by "
                              "'recsys train'", path=file) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"not valid JSON ({error}); the file is truncated or damaged",
                              path=file) from None
    if not isinstance(manifest, dict):
        raise CheckpointError("expected a JSON object", path=file)
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise CheckpointError(f"expected the key {missing[0]!r}", path=file, field=missing[0])
    _check_structure(manifest, file)
    version = manifest["manifest_version"]
    if version != MANIFEST_VERSION:
        raise CheckpointError(f"manifest version {version} is not supported; expected "
                              f"{MANIFEST_VERSION} (retrain with this version of recsys)",
                              path=file, field="manifest_version")
    return manifest


def _check_structure(manifest: dict[str, Any], file: Path) -> None:
    """The nested entries every reader relies on exist and have the right kind."""
    models = manifest["models"]
    if not isinstance(models, dict) or not models:
        raise CheckpointError("expected a non-empty object of models", path=file, field="models")
    for name, entry in models.items():
        missing = [k for k in ("config", "file", "sha256") if k not in entry] if (
            isinstance(entry, dict)) else ["config"]
        if missing:
            raise CheckpointError(f"expected the key {missing[0]!r}", path=file,
                                  field=f"models.{name}")
    if manifest["primary"] not in models:
        raise CheckpointError(f"expected one of the models {', '.join(models)}, got "
                              f"{manifest['primary']!r}", path=file, field="primary")
    if not isinstance(manifest.get("baselines", {}), dict):
        raise CheckpointError("expected an object", path=file, field="baselines")


def find_checkpoint(root: str | Path = "checkpoints") -> Path:
    """The checkpoint named by ``$RECSYS_CHECKPOINT``, else the newest under ``root``.

    "Newest" is by the manifest's ``created_at``; directories without a readable manifest
    are skipped with a warning, and when every one is unreadable the last error is raised.
    """
    named = os.environ.get(ENV_CHECKPOINT)
    if named:
        path = Path(named)
        if not path.is_absolute() and not path.exists():
            path = Path(root) / named
        read_manifest(path)
        return path

    candidates, errors = [], []
    for directory in sorted(Path(root).glob("*/")) if Path(root).is_dir() else []:
        if directory.name.startswith(".") or not (directory / MANIFEST).exists():
            continue
        try:
            candidates.append((read_manifest(directory)["created_at"], directory))
        except CheckpointError as error:
            errors.append(error)
    if not candidates and errors:
        # Only unusable checkpoints: say why the last one is refused, once.
        raise errors[-1]
    for error in errors:
        log.warning("skipping a checkpoint: %s", error)
    if not candidates:
        raise CheckpointError("no checkpoint found; train one with 'recsys train "
                              "--config configs/ml-latest-small.toml'", path=root)
    return max(candidates)[1]


def checkpoint_identity(path: str | Path) -> str:
    """sha256 over a checkpoint's manifest and weight files, in name order."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).iterdir()):
        if file.is_file() and not file.name.startswith("."):
            digest.update(file.name.encode())
            digest.update(_sha256(file).encode())
    return digest.hexdigest()


def now_iso() -> str:
    """The current UTC time, as the manifest's ``created_at`` records it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the numbers depend on."""
    import platform

    import numpy
    import pandas
    import scipy

    import recsys

    return {"recsys": recsys.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "pandas": pandas.__version__, "python": platform.python_version()}


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to ``path`` through a temporary file and a rename."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def _write_json(path: Path, payload: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_name(name: str) -> None:
    """A checkpoint name is one plain directory name."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise CheckpointError(f"expected a plain directory name (letters, digits, '_', '.', "
                              f"'-'), got {name!r}", field="name")
