"""Training configuration: TOML files, defaults, and ``section.key=value`` overrides.

A configuration is a nested mapping with the sections ``data``, ``preprocessing``, ``split``,
``model.multvae``, ``model.multdae``, ``train`` and ``baselines``. Every key has a default
(see :data:`DEFAULTS`), so an empty file is a valid configuration; an unknown key is an error
that names it, so a misspelt setting never silently does nothing.
"""

from __future__ import annotations

import copy
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


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a TOML file (or none), merge it over the defaults and apply ``key=value`` overrides.

    Overrides use dotted keys (``train.epochs=5``, ``model.multvae.latent_dim=64``); their
    values are parsed as TOML values (``[600]``, ``true``, ``0.2``), or taken as strings.
    """
    config = copy.deepcopy(DEFAULTS)
    source = "defaults"
    if path is not None:
        source = str(path)
        _merge(config, _read_toml(Path(path)), source, prefix="")
    for override in overrides or []:
        key, value = _parse_override(override)
        _merge(config, _nest(key, value), "--set", prefix="")
    _check(config, source)
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


def _merge(base: dict[str, Any], update: dict[str, Any], source: str, prefix: str) -> None:
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
            _merge(base[key], value, source, prefix=f"{dotted}.")
        else:
            base[key] = _coerce(value, base[key], source, dotted)


def _coerce(value: Any, default: Any, source: str, key: str) -> Any:
    """Check that a value has its default's type; ints are accepted where floats are."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok and key != "split.n_heldout" else value
    else:
        ok = isinstance(value, type(default))
    if key in ("split.cut", "split.n_heldout") and isinstance(value, int | float | str):
        ok = True
    if not ok:
        raise RecsysError(f"expected a {type(default).__name__}, got {value!r}", path=source,
                          field=key)
    return value


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


def _check(config: dict[str, Any], source: str) -> None:
    """Range checks that the types alone do not give."""
    train = config["train"]
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if train[key] < 1:
            raise RecsysError(f"expected a positive integer, got {train[key]}", path=source,
                              field=f"train.{key}")
    unknown = [m for m in train["models"] if m not in config["model"]]
    if unknown or not train["models"]:
        raise RecsysError(f"expected a non-empty list from {', '.join(config['model'])}, got "
                          f"{train['models']!r}", path=source, field="train.models")
    if train["beta_cap"] < 0.0:
        raise RecsysError(f"expected a non-negative number, got {train['beta_cap']}",
                          path=source, field="train.beta_cap")
