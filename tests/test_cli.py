"""The command line end to end on tiny data: train, evaluate, and refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys import pipeline
from recsys.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def trained(tmp_path: Path, tiny_config: Path, capsys) -> Path:
    code, out, err = run(capsys, "train", "--config", str(tiny_config), "--root",
                         str(tmp_path / "checkpoints"))
    assert code == 0, err
    return Path(out.strip())


def test_train_writes_a_checkpoint_that_evaluate_reproduces(trained: Path, capsys) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert set(manifest["models"]) == {"multvae", "multdae"}
    assert set(manifest["baselines"]) == {"popularity", "ease"}
    assert manifest["split"]["stats"]["test_users"] == 10
    assert len(manifest["models"]["multvae"]["history"]) == 4

    code, out, err = run(capsys, "evaluate", str(trained))
    assert code == 0, err
    vae = manifest["models"]["multvae"]["test"]["ndcg@100"]
    assert "| Multi-VAE | " in out
    assert f"{vae:.4f}" in out


def test_training_twice_gives_the_same_numbers(trained: Path, tiny_config: Path, tmp_path: Path,
                                               capsys) -> None:
    code, out, _ = run(capsys, "train", "--config", str(tiny_config), "--root",
                       str(tmp_path / "again"))
    assert code == 0
    first = json.loads((trained / "manifest.json").read_text())
    second = json.loads((Path(out.strip()) / "manifest.json").read_text())
    for name in ("multvae", "multdae"):
        assert first["models"][name]["test"] == second["models"][name]["test"]
        assert first["models"][name]["sha256"] == second["models"][name]["sha256"]


def test_an_existing_checkpoint_name_is_refused(trained: Path, tiny_config: Path,
                                                capsys) -> None:
    before = (trained / "manifest.json").read_bytes()
    code, _, err = run(capsys, "train", "--config", str(tiny_config), "--root",
                       str(trained.parent))
    assert code == 2
    assert "already exists" in err and str(trained) in err
    assert (trained / "manifest.json").read_bytes() == before


def test_changed_data_is_refused_by_evaluate(trained: Path, capsys) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    ratings = Path(manifest["data"]["source"]) / "ratings.csv"
    lines = ratings.read_text().splitlines()
    ratings.write_text("\n".join(lines[:-40]) + "\n")
    code, _, err = run(capsys, "evaluate", str(trained))
    assert code == 2
    assert "fingerprint" in err and "ratings" not in err.split(":")[-1]
    assert len(err.strip().splitlines()) == 1


def test_interrupted_training_writes_nothing(tmp_path: Path, tiny_config: Path, monkeypatch,
                                             capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_model", interrupted)
    root = tmp_path / "checkpoints"
    code, _, err = run(capsys, "train", "--config", str(tiny_config), "--root", str(root))
    assert code == 130
    assert "nothing was written" in err
    assert not root.exists() or list(root.iterdir()) == []


def test_a_weak_split_trains_with_carved_validation(tmp_path: Path, tiny_config: Path,
                                                    capsys) -> None:
    code, out, err = run(capsys, "train", "--config", str(tiny_config), "--root",
                         str(tmp_path / "c"), "--set", 'split.strategy="random"', "--epochs", "1")
    assert code == 0, err
    stats = json.loads((Path(out.strip()) / "manifest.json").read_text())["split"]["stats"]
    assert stats["validation_targets"] > 0 and stats["test_targets"] > 0


@pytest.mark.parametrize(("overrides", "field"), [
    (["split.n_heldout=1.5"], "split.n_heldout"),
    (["split.n_heldout=40"], "split.n_heldout"),
    (['split.strategy="sideways"'], "split.strategy"),
    (["train.epochs=0"], "train.epochs"),
    (["train.epoch=3"], "train.epoch"),
    (['split.strategy="random"', "split.fraction=1.5"], "split.fraction"),
    (['split.strategy="random"', "split.fraction=0"], "split.fraction"),
    (['model.multvae.dropout=1.0'], "model.multvae.dropout"),
    (['model.multvae.hidden_dims=["a"]'], "model.multvae.hidden_dims"),
    (['split.n_heldout="abc"'], "split.n_heldout"),
    (["train.lr=-1"], "train.lr"),
    (["train.threads=-1"], "train.threads"),
    (["train.patience=0"], "train.patience"),
    (['train.device="cpux"'], "train.device"),
    (['name="a/b"'], "name"),
    (['name=".."'], "name"),
    (["baselines.ease_lambdas=[-1.0]"], "baselines.ease_lambdas"),
    (['train.models=["multvae", "ease"]'], "train.models"),
])
def test_bad_settings_give_one_line(tmp_path: Path, tiny_config: Path, capsys,
                                    overrides: list[str], field: str) -> None:
    extra = [arg for override in overrides for arg in ("--set", override)]
    code, _, err = run(capsys, "train", "--config", str(tiny_config), "--root",
                       str(tmp_path / "c"), *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert field in err and "expected" in err
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []


def test_a_file_as_checkpoint_root_is_refused_before_training(
    tmp_path: Path, tiny_config: Path, monkeypatch, capsys
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "train_model", never)
    root = tmp_path / "a-file"
    root.write_text("x")
    code, _, err = run(capsys, "train", "--config", str(tiny_config), "--root", str(root))
    assert code == 2 and "expected a directory" in err
    assert root.read_text() == "x"


def test_evaluate_refuses_unknown_cut_offs_before_evaluating(trained: Path, capsys) -> None:
    code, _, err = run(capsys, "evaluate", str(trained), "--ks", "7")
    assert code == 2 and "--ks" in err and "[1, 5, 10, 20, 50, 100]" in err
    code, _, err = run(capsys, "evaluate", str(trained), "--ks", "ten")
    assert code == 2 and "comma-separated integers" in err


def test_summary_without_a_base_and_into_a_file(trained: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "report", "summary", "--head", str(trained), "--base", "")
    assert code == 0 and "No base checkpoint" in out
    code, _, _ = run(capsys, "report", "summary", "--head", str(trained), "--base",
                     str(trained), "--out", str(tmp_path / "summary.md"))
    assert code == 0 and "+0.0000" in (tmp_path / "summary.md").read_text()
    code, _, err = run(capsys, "report", "summary", "--head", str(trained), "--out",
                       str(tmp_path / "missing" / "s.md"))
    assert code == 2 and "does not exist" in err


def test_missing_data_names_the_file(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[data]\npath = "nowhere/ratings.csv"\n')
    code, _, err = run(capsys, "train", "--config", str(config), "--root", str(tmp_path / "c"))
    assert code == 2
    assert "nowhere/ratings.csv" in err and "not found" in err


def test_a_missing_config_file_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "train", "--config", str(tmp_path / "none.toml"))
    assert code == 2
    assert "none.toml" in err


def test_synth_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    code, _, err = run(capsys, "data", "synth", "--out", str(out), "--users", "50", "--items",
                       "40", "--interactions", "400")
    assert code == 0, err
    before = (out / "ratings.csv").read_bytes()
    code, _, err = run(capsys, "data", "synth", "--out", str(out), "--users", "50", "--items",
                       "40", "--interactions", "400", "--seed", "2")
    assert code == 2 and "already holds ratings.csv" in err
    assert (out / "ratings.csv").read_bytes() == before
    assert "SYNTHETIC" in (out / "README.txt").read_text()

    # An impossible shape is refused before the directory is made.
    code, _, err = run(capsys, "data", "synth", "--out", str(tmp_path / "bad"), "--items", "5")
    assert code == 2 and "--items" in err
    assert not (tmp_path / "bad").exists()


def test_a_relative_data_path_is_found_from_anywhere(tmp_path: Path, tiny_config: Path,
                                                     movielens_dir: Path, monkeypatch,
                                                     capsys) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    movielens_dir.rename(project / "data" / "tiny")
    monkeypatch.chdir(project)
    code, out, err = run(capsys, "train", "--config", str(tiny_config), "--set",
                         'data.path="data/tiny"', "--root", "runs/nested", "--epochs", "1")
    assert code == 0, err
    checkpoint = project / out.strip()

    # Another working folder: the data is found from the checkpoint, not from the cwd.
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "evaluate", str(checkpoint))
    assert code == 0, err
