"""Training configuration: TOML files, defaults, and ``section.key=value`` overrides.

A configuration is a nested mapping with the sections ``data``, ``preprocessing``, ``split``,
``model.multvae``, ``model.multdae``, ``train`` and ``baselines``. Every key has a default
(see :data:`DEFAULTS`), so an empty file is a valid configuration; an unknown key is an error
that names it, so a misspelt setting never silently does nothing.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError

DEFAULTS: dict[str, Any] = {
    "name": "",
    "data": {
        "path": "data/ml-latest-small",
        "format": "auto",
        "user_col": "user",
        "item_col": "item",
        "rating_col": "",
        "timestamp_col": "",
    },
    "preprocessing": {
        "threshold": 3.5,
        "min_user_items": 5,
        "min_item_users": 1,
        "k_core": False,
    },
    "split": {
        "strategy": "heldout_users",
        "n_heldout": 0.1,
        "seed": 0,
        "target_fraction": 0.2,
        "min_items": 5,
        "fraction": 0.2,
        "cut": "",
    },
    "model": {
        "multvae": {"hidden_dims": [600], "latent_dim": 200, "dropout": 0.5},
        "multdae": {"hidden_dims": [], "latent_dim": 200, "dropout": 0.5},
    },
    "train": {
        "models": ["multvae", "multdae"],
        "epochs": 200,
        "batch_size": 500,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "beta_cap": 0.2,
        "anneal_steps": 0,
        "patience": 30,
        "seed": 0,
        "device": "cpu",
        "eval_batch_size": 1000,
        "threads": 0,
    },
    "baselines": {
        "ease_lambdas": [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
    },
}

# Settings each split strategy accepts; the others in [split] are ignored for it.
SPLIT_SETTINGS: dict[str, tuple[str, ...]] = {
    "random": ("fraction", "seed"),
    "leave_one_out": ("seed",),
    "temporal_user": ("fraction",),
    "temporal_global": ("fraction", "cut"),
    "heldout_users": ("n_heldout", "seed", "target_fraction", "min_items"),
}


def load_config(
    path: str | Path | None,
    overrides: list[str] | None = None,
    flags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Read a TOML file (or none), merge it over the defaults and apply ``key=value`` overrides.

    Overrides use dotted keys (``train.epochs=5``, ``model.multvae.latent_dim=64``); their
    values are parsed as TOML values (``[600]``, ``true``, ``0.2``), or taken as strings.
    Every value is checked here, before any work starts; an error names the file (or
    ``--set``, or the option named for that key in ``flags``) and the dotted key.
    """
    config = copy.deepcopy(DEFAULTS)
    origins: dict[str, str] = {}
    if path is not None:
        _merge(config, _read_toml(Path(path)), str(path), "", origins)
    for override in overrides or []:
        key, value = _parse_override(override)
        _merge(config, _nest(key, value), (flags or {}).get(key, "--set"), "", origins)
    _check(config, origins)
    return config


def split_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword settings for the configured split strategy, blanks left out."""
    split = config["split"]
    strategy = split["strategy"]
    if strategy not in SPLIT_SETTINGS:
        raise RecsysError(f"expected one of {', '.join(SPLIT_SETTINGS)}, got {strategy!r}",
                          field="split.strategy")
    settings = {key: split[key] for key in SPLIT_SETTINGS[strategy] if split[key] != ""}
    if strategy == "heldout_users" and float(settings["n_heldout"]).is_integer():
        settings["n_heldout"] = int(settings["n_heldout"])
    return settings


def read_options(config: dict[str, Any]) -> dict[str, Any]:
    """Keyword options for :func:`recsys.data.read_interactions` from the ``data`` section."""
    data = config["data"]
    options: dict[str, Any] = {"fmt": data["format"]}
    if data["format"] in ("csv", "tsv"):
        options.update(user_col=data["user_col"], item_col=data["item_col"],
                       rating_col=data["rating_col"] or None,
                       timestamp_col=data["timestamp_col"] or None)
    return options


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecsysError("config file not found; expected a TOML file", path=path) from None
    except tomllib.TOMLDecodeError as error:
        raise RecsysError(f"not valid TOML ({error})", path=path) from None


def _merge(
    base: dict[str, Any], update: dict[str, Any], source: str, prefix: str,
    origins: dict[str, str],
) -> None:
    """Merge ``update`` into ``base`` in place, refusing keys that ``base`` does not have."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(f"{prefix}{k}" for k in base)
            raise RecsysError(f"unknown setting; expected one of {known}", path=source,
                              field=dotted)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RecsysError("expected a table of settings", path=source, field=dotted)
            _merge(base[key], value, source, f"{dotted}.", origins)
        else:
            base[key] = _coerce(value, base[key], source, dotted)
            origins[dotted] = source


def _coerce(value: Any, default: Any, source: str, key: str) -> Any:
    """Check that a value has its default's type; ints are accepted where floats are."""
    if key == "split.cut":
        ok = isinstance(value, int | str) and not isinstance(value, bool)
    elif key == "split.n_heldout":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        expected = {"split.cut": "epoch seconds or an ISO date",
                    "split.n_heldout": "a number"}.get(key, _type_name(default))
        raise RecsysError(f"expected {expected}, got {value!r}", path=source, field=key)
    return value


def _type_name(value: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(type(value), type(value).__name__)


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise RecsysError(f"expected section.key=value, got {text!r}", field="--set")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    node = nested
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


# Range checks: (dotted key, test, what is expected).
RANGES: tuple[tuple[str, Any, str], ...] = (
    ("train.epochs", lambda v: v >= 1, "a positive integer"),
    ("train.batch_size", lambda v: v >= 1, "a positive integer"),
    ("train.eval_batch_size", lambda v: v >= 1, "a positive integer"),
    ("train.patience", lambda v: v >= 1, "a positive integer"),
    ("train.anneal_steps", lambda v: v >= 0, "a non-negative integer (0: every planned step)"),
    ("train.threads", lambda v: v >= 0, "a non-negative integer (0: torch's default)"),
    ("train.lr", lambda v: v > 0, "a positive number"),
    ("train.weight_decay", lambda v: v >= 0, "a non-negative number"),
    ("train.beta_cap", lambda v: v >= 0, "a non-negative number"),
    ("train.device", lambda v: re.fullmatch(r"cpu|cuda(:\d+)?", v), "cpu, cuda or cuda:N"),
    ("split.n_heldout", lambda v: v > 0 and (v < 1 or float(v).is_integer()),
     "a count of users (1, 2, ...) or a fraction of all users between 0 and 1"),
    ("baselines.ease_lambdas", lambda v: all(isinstance(x, int | float) and x > 0 for x in v),
     "a list of positive numbers"),
    ("name", lambda v: v == "" or re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", v),
     "a plain directory name (letters, digits, '_', '.', '-')"),
)


def _check(config: dict[str, Any], origins: dict[str, str]) -> None:
    """Range checks that the types alone do not give."""
    for key, test, expected in RANGES:
        value = _lookup(config, key)
        if not test(value):
            raise RecsysError(f"expected {expected}, got {value!r}",
                              path=origins.get(key, "defaults"), field=key)

    train = config["train"]
    models = train["models"]
    if (not models or len(set(models)) < len(models)
            or any(m not in config["model"] for m in models)):
        raise RecsysError(f"expected a non-empty list from {', '.join(config['model'])} "
                          f"without repeats, got {models!r}",
                          path=origins.get("train.models", "defaults"), field="train.models")
    for kind in config["model"]:
        _check_model(config["model"][kind], f"model.{kind}", origins)


def _check_model(model: dict[str, Any], prefix: str, origins: dict[str, str]) -> None:
    """Widths are positive integers and dropout is a probability below one."""
    checks = (
        ("hidden_dims", all(isinstance(d, int) and d >= 1 for d in model["hidden_dims"]),
         "a list of positive integers"),
        ("latent_dim", model["latent_dim"] >= 1, "a positive integer"),
        ("dropout", 0.0 <= model["dropout"] < 1.0, "a probability in [0, 1)"),
    )
    for key, ok, expected in checks:
        if not ok:
            field = f"{prefix}.{key}"
            raise RecsysError(f"expected {expected}, got {model[key]!r}",
                              path=origins.get(field, "defaults"), field=field)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node
