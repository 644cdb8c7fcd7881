"""Time and memory of each stage of the pipeline, on the shipped data and at the ML-20M shape.

Run by hand from the project root (it is not a test)::

    python benchmarks/bench.py                      # both datasets, every stage
    python benchmarks/bench.py --data small --json bench.json
    python benchmarks/bench.py --data ml20m --stages data peak

Every stage runs in a fresh Python process, and its peak resident memory is that process's
own, read from ``os.wait4``, so that one stage's allocations cannot hide another's. The data
stage caches the split matrices under ``.cache/bench/<dataset>/``; later stages read them
from there instead of parsing the ratings again. The ML-20M-shaped data are synthetic
(:mod:`recsys.synth`), generated once into ``.cache/synth-ml20m/``.

Stages
------
synth     generate the synthetic ratings (ML-20M shape only, when missing)
data      read + preprocess, then the paper's held-out-users split
peak      the machine's float32 matmul peak with torch, on the threads torch uses
train     one epoch of Multi-VAE training: seconds, users/s, FLOP/s as a share of the peak
evaluate  top-100 of every test user, seen items excluded, against a bare forward pass
report    the book's per-checkpoint precomputation (recsys.report.precompute.compute_artifacts)
ease      EASE fitted on the training users with one penalty (500)
cli       ``recsys train`` end to end with one epoch per model, into a temporary root

Timings on a shared machine are noisy: the evaluate stage repeats each measurement and keeps
the fastest, and the table records the load average when each stage ended.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
STAGES = ("synth", "data", "peak", "train", "evaluate", "report", "ease", "cli")
RESULT_PREFIX = "BENCH-RESULT "
TOP_K = 100
EVAL_BATCH = 1000
REPEATS = 3


@dataclass(frozen=True)
class Target:
    """A dataset to benchmark: where its ratings are and how many users the split holds out."""

    name: str
    path: Path
    n_heldout: int
    config: Path
    synthetic: bool = False


TARGETS = {
    "small": Target("small", ROOT / "data" / "ml-latest-small", 100,
                    ROOT / "configs" / "ml-latest-small.toml"),
    "ml20m": Target("ml20m", CACHE / "synth-ml20m", 10_000,
                    ROOT / "configs" / "synth-ml20m.toml", synthetic=True),
}


# --------------------------------------------------------------------------------------------
# Stages: each runs inside its own worker process and returns a dict of figures.


def stage_synth(target: Target) -> dict[str, Any]:
    """Generate the synthetic ratings unless a generated file is already there."""
    from recsys.synth import write_synthetic

    if (target.path / "ratings.csv").is_file():
        return {"skipped": "already generated"}
    started = time.perf_counter()
    write_synthetic(target.path, seed=0)
    return {"seconds": time.perf_counter() - started}


def stage_data(target: Target) -> dict[str, Any]:
    """Read, preprocess and split; cache the split's matrices for the later stages."""
    import numpy as np
    import scipy.sparse as sp

    from recsys.preprocess import load_dataset
    from recsys.splits import heldout_users_split

    with timer() as load_seconds:
        dataset = load_dataset(target.path)
    with timer() as split_seconds:
        split = heldout_users_split(dataset, target.n_heldout, seed=98765)

    # Everything the model stages need, without the tidy tables.
    cache = cache_dir(target)
    sp.save_npz(cache / "train.npz", split.train)
    sp.save_npz(cache / "test_fold_in.npz", split.test.fold_in)
    sp.save_npz(cache / "test_targets.npz", split.test.targets)
    known = [split.train, split.test.fold_in]
    if split.validation is not None:
        known.insert(1, split.validation.fold_in)
    sp.save_npz(cache / "known.npz", sp.vstack(known, format="csr"))
    np.save(cache / "shape.npy", np.array(split.train.shape))

    return {
        "seconds": load_seconds() + split_seconds(),
        "load_seconds": load_seconds(),
        "split_seconds": split_seconds(),
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": len(dataset.interactions),
        "train_users": split.train.shape[0],
        "split_items": split.n_items,
        "test_users": split.test.n_users,
    }


def stage_peak(target: Target) -> dict[str, Any]:
    """Best float32 GFLOP/s of a large square matmul on torch's threads."""
    import torch

    size = 4096
    flops = matmul_peak(size)
    save_json(cache_dir(target) / "peak.json", {"flops": flops})
    return {"seconds": 2.0 * size**3 / flops, "gflops": flops / 1e9,
            "threads": torch.get_num_threads(), "matrix": size}


def stage_train(target: Target) -> dict[str, Any]:
    """One training epoch of the paper's Multi-VAE, with the FLOP/s it achieved."""
    from recsys.train import TrainSettings, train_model

    train = load_matrix(target, "train")
    model = paper_model(train.shape[1])
    settings = TrainSettings(epochs=1, batch_size=500)

    # The peak again, in this process and just before the epoch, as load changes by the minute.
    local_peak = matmul_peak()

    # Validation is skipped: only the optimisation steps are timed.
    result = train_model(model, train, lambda _: 0.0, settings, progress=False)
    seconds = result.history[0].seconds
    flops = training_flops(model, train, settings.batch_size)
    return {
        "seconds": seconds,
        "users_per_s": train.shape[0] / seconds,
        "gflops": flops / seconds / 1e9,
        "peak_share": flops / seconds / peak_flops(target),
        "local_peak_gflops": local_peak / 1e9,
        "local_peak_share": flops / seconds / local_peak,
        "batches": -(-train.shape[0] // settings.batch_size),
    }


def stage_evaluate(target: Target) -> dict[str, Any]:
    """Top-100 of every test user (seen items excluded) against the forward passes in it.

    The scorer is timed from inside :func:`recsys.recommend.top_k`, so the overhead is what
    ranking adds to the very forward passes it ranks (masking, top-K, copying results).
    """
    from recsys.metrics import ranking_metrics
    from recsys.pipeline import model_scorer
    from recsys.recommend import fresh_scores, top_k

    fold_in = load_matrix(target, "test_fold_in")
    targets = load_matrix(target, "test_targets")
    scorer = model_scorer(paper_model(fold_in.shape[1]))
    scorer(fold_in[:EVAL_BATCH])  # warm-up

    forward: list[float] = []

    def timed(batch: Any) -> Any:
        started = time.perf_counter()
        scores = scorer(batch)
        forward[-1] += time.perf_counter() - started
        return scores

    # Repeats keep the run with the least overhead; a burst of load inflates one run.
    runs = []
    for _ in range(REPEATS):
        forward.append(0.0)
        with timer() as ranking:
            recommended = top_k(fresh_scores(timed), fold_in, TOP_K, batch_size=EVAL_BATCH)
        runs.append((ranking() - forward[-1], forward[-1]))
    extra, scoring = min(runs, key=lambda run: run[0] / run[1])
    with timer() as metrics:
        ranking_metrics(recommended, targets, (1, 5, 10, 20, 50, 100))
    return {
        "seconds": extra + scoring + metrics(),
        "forward_seconds": scoring,
        "ranking_seconds": extra,
        "metrics_seconds": metrics(),
        "overhead": extra / scoring,
        "users": fold_in.shape[0],
    }


def stage_report(target: Target) -> dict[str, Any]:
    """The book's precomputation for one checkpoint, over every user of the split."""
    import torch

    from recsys.preprocess import load_dataset
    from recsys.report.precompute import compute_artifacts
    from recsys.splits import heldout_users_split

    # The data are read again (not timed): the precomputation needs the tidy tables.
    dataset = load_dataset(target.path)
    split = heldout_users_split(dataset, target.n_heldout, seed=98765)
    model = paper_model(split.n_items)
    with timer() as elapsed, torch.no_grad():
        artifacts = compute_artifacts(model, dataset, split, batch_size=EVAL_BATCH)
    return {
        "seconds": elapsed(),
        "users": len(artifacts.user_nums),
        "users_per_s": len(artifacts.user_nums) / elapsed(),
    }


def stage_ease(target: Target) -> dict[str, Any]:
    """EASE on the training users with Steck's ML-20M penalty."""
    from recsys.baselines import fit_ease

    train = load_matrix(target, "train")
    with timer() as elapsed:
        model = fit_ease(train, 500.0)
    return {"seconds": elapsed(), "items": model.n_items,
            "weights_gb": model.weights.nbytes / 1e9}


def stage_cli(target: Target) -> dict[str, Any]:
    """``recsys train`` with the dataset's config and one epoch, into a temporary root."""
    import tempfile

    from recsys.cli import main as recsys_main

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as root, timer() as elapsed:
        status = recsys_main(["train", "--config", str(target.config), "--root", root,
                              "--set", "train.epochs=1", "--set", f"data.path={target.path}",
                              "--quiet"])
    if status != 0:
        raise SystemExit(f"recsys train exited with status {status}")
    return {"seconds": elapsed()}


STAGE_FUNCTIONS: dict[str, Callable[[Target], dict[str, Any]]] = {
    "synth": stage_synth,
    "data": stage_data,
    "peak": stage_peak,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "report": stage_report,
    "ease": stage_ease,
    "cli": stage_cli,
}


# --------------------------------------------------------------------------------------------
# Helpers used by the stages.


def paper_model(n_items: int) -> Any:
    """The paper's Multi-VAE (I-600-200-600-I), freshly initialised with seed 0."""
    from recsys.model import ModelConfig
    from recsys.train import build_model

    return build_model(ModelConfig("multvae", n_items), seed=0)


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """Best float32 FLOP/s of ``size`` x ``size`` matrix products on torch's threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * size**3 / best


def training_flops(model: Any, train: Any, batch_size: int) -> float:
    """Matmul FLOPs of one epoch over ``train``: 3x forward for the dense layers.

    The sparse input layer costs 2 FLOPs per non-zero and output unit forward and as much
    again for its weight gradient; its input needs no gradient, so it counts 2x forward.
    """
    dense = [*model.encoder, *model.decoder]
    dense_per_user = sum(2 * layer.in_features * layer.out_features for layer in dense)
    sparse = 2 * 2 * train.nnz * model.input_layer.weight.shape[1]
    return 3.0 * dense_per_user * train.shape[0] + sparse


def _seconds(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed:``; ``elapsed()`` gives the block's seconds once it ends."""
    box = {"start": time.perf_counter(), "end": None}

    def elapsed() -> float:
        return (box["end"] or time.perf_counter()) - box["start"]

    try:
        yield elapsed
    finally:
        box["end"] = time.perf_counter()


def cache_dir(target: Target) -> Path:
    path = CACHE / "bench" / target.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_matrix(target: Target, name: str) -> Any:
    import scipy.sparse as sp

    path = cache_dir(target) / f"{name}.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run the data stage for {target.name} first")
    return sp.load_npz(path).tocsr()


def peak_flops(target: Target) -> float:
    path = cache_dir(target) / "peak.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run the peak stage for {target.name} first")
    return json.loads(path.read_text())["flops"]


def save_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The parent: one worker process per (dataset, stage), its peak RSS from wait4.


def run_stage(target: Target, stage: str) -> dict[str, Any]:
    """Run one stage in a fresh interpreter; return its figures plus its peak RSS."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", stage,
               "--data", target.name]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)

    record: dict[str, Any] = {"dataset": target.name, "stage": stage,
                              "wall_seconds": time.perf_counter() - started,
                              "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
                              "load_1min": os.getloadavg()[0]}
    results = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not results:
        record["error"] = f"exit status {process.returncode}"
        return record
    record.update(json.loads(results[-1][len(RESULT_PREFIX):]))
    return record


def worker(stage: str, target: Target) -> None:
    """The child's side: run the stage and print its figures as one marked JSON line."""
    figures = STAGE_FUNCTIONS[stage](target)
    print(RESULT_PREFIX + json.dumps(figures), flush=True)


def print_header() -> None:
    print(f"{'dataset':8} {'stage':9} {'seconds':>9} {'peak RSS':>9}  details")
    print("-" * 80)


def print_row(record: dict[str, Any]) -> None:
    """One line per (dataset, stage): seconds, peak RSS and the stage's own figures."""
    seconds = record.get("seconds")
    shown = f"{seconds:9.2f}" if isinstance(seconds, float) else f"{'-':>9}"
    details = ", ".join(f"{key}={_format(value)}" for key, value in record.items()
                        if key not in ("dataset", "stage", "seconds", "peak_rss_gb"))
    print(f"{record['dataset']:8} {record['stage']:9} {shown} "
          f"{record['peak_rss_gb']:7.2f}GB  {details}", flush=True)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(TARGETS), default=["small", "ml20m"],
                        help="datasets to benchmark (default: both)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="stages to run, in pipeline order (default: all)")
    parser.add_argument("--json", type=Path, help="also write the records to this file")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, TARGETS[args.data[0]])
        return 0

    records = []
    print_header()
    for name in args.data:
        target = TARGETS[name]
        for stage in (s for s in STAGES if s in args.stages):
            if stage == "synth" and not target.synthetic:
                continue
            records.append(run_stage(target, stage))
            print_row(records[-1])
    if args.json:
        save_json(args.json, {"records": records})
    return 0 if all("error" not in record for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
