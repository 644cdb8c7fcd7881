"""The ``recsys`` command: train, evaluate, make data, summarise checkpoints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recsys.errors import RecsysError

log = logging.getLogger("recsys")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input ends with one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet = args.quiet or args.quiet_first
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return int(args.handler(args))
    except RecsysError as error:
        print(f"recsys: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recsys: interrupted; nothing was written", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    # -q works before or after the command name; the two flags are merged in main().
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="log warnings only, no progress bars")
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    parser.add_argument("-q", "--quiet", dest="quiet_first", action="store_true",
                        help="log warnings only, no progress bars")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", parents=[common],
                                help="train Multi-VAE (and Multi-DAE) into a checkpoint")
    train.add_argument("--config", type=Path, help="TOML file; defaults apply to what it omits")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--name", help="checkpoint directory name (must not exist)")
    train.add_argument("--root", type=Path, default=Path("checkpoints"),
                       help="where checkpoints live (default: checkpoints)")
    train.add_argument("--device", help="cpu or cuda (overrides train.device)")
    train.add_argument("--epochs", type=int, help="overrides train.epochs")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="recompute a checkpoint's test metrics")
    evaluate.add_argument("checkpoint", nargs="?", type=Path,
                          help="checkpoint directory (default: the newest in checkpoints/)")
    evaluate.add_argument("--root", type=Path, default=Path("checkpoints"))
    evaluate.add_argument("--ks", default="20,50,100", help="cut-offs to print (default 20,50,100)")
    evaluate.set_defaults(handler=_evaluate)

    data = commands.add_parser("data", help="make or inspect data")
    data_commands = data.add_subparsers(required=True, metavar="DATA_COMMAND")
    synth = data_commands.add_parser("synth", parents=[common],
                                     help="write a SYNTHETIC MovieLens-shaped data set "
                                          "(for benchmarks only)")
    synth.add_argument("--out", type=Path, required=True, help="directory to create")
    synth.add_argument("--users", type=int, default=136_677)
    synth.add_argument("--items", type=int, default=20_108)
    synth.add_argument("--interactions", type=int, default=10_000_000,
                       help="positive interactions (ratings above 3.5)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=_synth)

    report = commands.add_parser("report", help="the book's helpers")
    report_commands = report.add_subparsers(required=True, metavar="REPORT_COMMAND")
    summary = report_commands.add_parser(
        "summary", parents=[common],
        help="markdown comparing a checkpoint's test metrics with a base checkpoint's")
    summary.add_argument("--head", type=Path, default=Path("checkpoints"),
                         help="checkpoint directory, or a folder of them (newest is taken)")
    summary.add_argument("--base", type=Path, default=None,
                         help="the checkpoint to compare with (directory or folder); "
                              "omitted or empty: no comparison")
    summary.add_argument("--out", type=Path, help="write here instead of standard output")
    summary.set_defaults(handler=_summary)
    return parser


def _train(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from recsys.config import load_config
    from recsys.pipeline import train_from_config

    overrides = list(args.set)
    if args.device:
        overrides.append(f'train.device="{args.device}"')
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides,
                         flags={"train.device": "--device", "train.epochs": "--epochs"})
    _check_device(config["train"]["device"])

    # Log lines go above the progress bars instead of through them.
    with logging_redirect_tqdm():
        path = train_from_config(config, args.root, args.name, progress=not args.quiet)
    print(path)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from recsys.checkpoint import find_checkpoint, load_checkpoint
    from recsys.pipeline import evaluate_checkpoint
    from recsys.summary import metrics_table, recorded_test_metrics

    ks = _parse_ks(args.ks)
    path = args.checkpoint or find_checkpoint(args.root)
    checkpoint = load_checkpoint(path)
    available = checkpoint.manifest.get("metrics_ks", [])
    if any(k not in available for k in ks):
        raise RecsysError(f"expected cut-offs among {available}, got {ks}", field="--ks")
    log.info("evaluating %s", path)
    results = evaluate_checkpoint(checkpoint)
    print(metrics_table(checkpoint.manifest, results, ks))
    recorded = recorded_test_metrics(checkpoint.manifest)
    drift = [
        f"{model} {metric}: recorded {recorded[model][metric]:.4f}, now {value:.4f}"
        for model, values in results.items() for metric, value in values.items()
        if model in recorded and abs(recorded[model].get(metric, value) - value) > 1e-4
    ]
    for line in drift:
        log.warning("differs from the manifest: %s", line)
    return 1 if drift else 0


def _synth(args: argparse.Namespace) -> int:
    from recsys.synth import check_shape, write_synthetic

    if args.out.exists() and not args.out.is_dir():
        raise RecsysError("is a file; expected a directory to create", path=args.out)
    if (args.out / "ratings.csv").exists():
        raise RecsysError("already holds ratings.csv; expected a new directory", path=args.out)

    # Check the shape before creating anything, so a refusal leaves no empty directory.
    try:
        check_shape(args.users, args.items, args.interactions)
    except RecsysError as error:
        # The generator names its arguments; the command line calls them --users and so on.
        option = "--" + (error.field or "").removeprefix("n_")
        raise RecsysError(error.message, field=option) from None
    path = write_synthetic(args.out, args.users, args.items, args.interactions, seed=args.seed)
    print(path)
    return 0


def _summary(args: argparse.Namespace) -> int:
    from recsys.checkpoint import write_text_atomic
    from recsys.summary import comparison_markdown

    head = _manifest_at(args.head)
    base = _manifest_at(args.base) if args.base not in (None, Path("")) else None
    text = comparison_markdown(base, head)
    if args.out is not None and not args.out.parent.is_dir():
        raise RecsysError("the folder does not exist; expected an existing folder",
                          path=args.out.parent, field="--out")
    if args.out is not None and args.out.is_dir():
        raise RecsysError("is a directory; expected a file name", path=args.out, field="--out")
    if args.out is None:
        print(text, end="")
    else:
        write_text_atomic(args.out, text)
    return 0


def _manifest_at(path: Path) -> dict | None:
    """The manifest of a checkpoint directory, or of the newest checkpoint in a folder."""
    from recsys.checkpoint import MANIFEST, find_checkpoint, read_manifest

    if (path / MANIFEST).exists():
        return read_manifest(path)
    return read_manifest(find_checkpoint(path))


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        raise RecsysError(f"expected comma-separated integers, got {text!r}",
                          field="--ks") from None
    return ks


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RecsysError("CUDA is not available on this machine; expected --device cpu",
                          field="train.device")
    if not device.startswith(("cpu", "cuda")):
        raise RecsysError(f"expected cpu or cuda, got {device!r}", field="train.device")


if __name__ == "__main__":
    sys.exit(main())
