"""Checkpoints: round trip, atomic writes, and every way a checkpoint can be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys import checkpoint as ckpt
from recsys.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from recsys.errors import CheckpointError
from recsys.model import ModelConfig, MultVAE


def small_models() -> dict[str, MultVAE]:
    torch.manual_seed(0)
    return {"multvae": MultVAE(ModelConfig("multvae", 12, (8,), latent_dim=3)),
            "multdae": MultVAE(ModelConfig("multdae", 12, (), latent_dim=3))}


def manifest_for(models: dict[str, MultVAE], created_at: str = "2026-01-01T00:00:00+00:00"):
    return {
        "created_at": created_at,
        "data": {"fingerprint": "f" * 64},
        "split": {"strategy": "heldout_users"},
        "item_ids": [str(i) for i in range(12)],
        "primary": "multvae",
        "models": {name: {"config": m.config.to_dict()} for name, m in models.items()},
    }


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    models = small_models()
    return save_checkpoint(tmp_path / "checkpoints", "first", models, manifest_for(models))


def test_round_trip_gives_the_same_outputs(saved: Path) -> None:
    loaded = load_checkpoint(saved)
    x = torch.eye(12).to_sparse_csr()
    for name, model in small_models().items():
        model.eval()
        torch.testing.assert_close(loaded.models[name](x).logits, model(x).logits)
    assert loaded.primary is loaded.models["multvae"]
    assert not loaded.primary.training


def test_files_are_safetensors_and_json_only(saved: Path) -> None:
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["manifest.json", "multdae.safetensors", "multvae.safetensors"]
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["manifest_version"] == ckpt.MANIFEST_VERSION
    assert len(manifest["models"]["multvae"]["sha256"]) == 64


def test_an_existing_checkpoint_is_never_overwritten(saved: Path) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    models = small_models()
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(saved.parent, "first", models, manifest_for(models))
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "_write_json", broken)
    models = small_models()
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, "half", models, manifest_for(models))
    assert list(tmp_path.iterdir()) == []


def test_truncated_weights_are_refused(saved: Path) -> None:
    weights = saved / "multvae.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"multvae\.safetensors.*sha256"):
        load_checkpoint(saved)


def test_a_missing_weight_file_is_refused(saved: Path) -> None:
    (saved / "multdae.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(saved)


@pytest.mark.parametrize(("content", "message"), [
    ('{"name": "x", "created_', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"manifest_version": 1}', "expected the key 'name'"),
])
def test_bad_manifests_are_refused(saved: Path, content: str, message: str) -> None:
    (saved / "manifest.json").write_text(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(saved)
    assert "manifest.json" in str(error.value)
    assert "\n" not in str(error.value)


def test_an_older_manifest_version_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["manifest_version"] = 0
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="version 0 is not supported"):
        read_manifest(saved)


def test_find_checkpoint_takes_the_newest_or_the_named_one(tmp_path: Path, monkeypatch) -> None:
    models = small_models()
    root = tmp_path / "checkpoints"
    save_checkpoint(root, "b-old", models, manifest_for(models, "2026-01-01T00:00:00+00:00"))
    save_checkpoint(root, "a-new", models, manifest_for(models, "2026-06-01T00:00:00+00:00"))
    (root / "junk").mkdir()
    monkeypatch.delenv(ckpt.ENV_CHECKPOINT, raising=False)
    assert find_checkpoint(root).name == "a-new"
    monkeypatch.setenv(ckpt.ENV_CHECKPOINT, "b-old")
    assert find_checkpoint(root).name == "b-old"


def test_no_checkpoint_says_how_to_train_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ckpt.ENV_CHECKPOINT, raising=False)
    with pytest.raises(CheckpointError, match="recsys train"):
        find_checkpoint(tmp_path)


def test_identity_changes_with_any_file(saved: Path) -> None:
    before = ckpt.checkpoint_identity(saved)
    assert ckpt.checkpoint_identity(saved) == before
    manifest = saved / "manifest.json"
    manifest.write_text(manifest.read_text().replace("heldout_users", "random"))
    assert ckpt.checkpoint_identity(saved) != before


def test_only_unusable_checkpoints_raise_their_error_without_a_warning(
    saved: Path, monkeypatch, caplog
) -> None:
    monkeypatch.delenv(ckpt.ENV_CHECKPOINT, raising=False)
    manifest = saved / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"manifest_version": 1',
                                                     '"manifest_version": 0'))
    with caplog.at_level("WARNING"), pytest.raises(CheckpointError, match="version 0"):
        find_checkpoint(saved.parent)
    assert caplog.records == []
