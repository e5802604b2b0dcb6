"""Presets (`preset: fast | balanced | best`, or `--preset`): documented bundles of defaults tied to a
budget, like AutoGluon's medium / high / best quality. A preset fills in keys the config leaves unset;
every key the config (or --set) gives wins. The resolved values are written to the run's config.yaml."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # A first look in a few minutes: a narrower model, about a quarter of the steps, at most 3 minutes.
    "fast": {"model": {"dim": 64}, "train": {"steps": 400, "time_limit": "3m"}},
    # The defaults: about 1500 optimizer steps, patience half the epochs.
    "balanced": {},
    # The most this machine can give in an hour: a wider model, three times the steps.
    "best": {"model": {"dim": 192}, "train": {"steps": 4500, "time_limit": "60m"}},
}


def with_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw config with its preset's values filled in where the config has none."""
    name = raw.get("preset")
    if name is None:
        return raw
    from mumo.errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"preset: {name!r} is not a preset; choose one of {', '.join(PRESETS)}")
    return _fill(raw, PRESETS[name])


def _fill(raw: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(out.get(key, {}), dict):
            out[key] = _fill(out.get(key) or {}, value)
        elif key not in out:
            out[key] = value
    return out


# The hyperparameters `mumo tune` searches per preset, as dotted config keys:
# ("log", low, high) | ("float", low, high) | ("int", low, high) | ("choice", [values]).
# A config's own `tune.space` replaces them.
_COMMON: dict[str, tuple[Any, ...]] = {
    "train.lr": ("log", 3e-4, 5e-3),
    "train.weight_decay": ("log", 1e-4, 0.1),
    "model.head.dropout": ("float", 0.0, 0.4),
    "model.modality_dropout": ("float", 0.0, 0.3),
    "model.fusion.type": ("choice", ["cross", "concat", "attention", "gated"]),
    "model.align": ("choice", [0.0, 0.5, 1.0]),
}
SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "fast": {**_COMMON, "model.dim": ("choice", [32, 64]), "train.steps": ("choice", [200, 400, 800])},
    "balanced": {
        **_COMMON,
        "model.dim": ("choice", [64, 128, 192]),
        "train.steps": ("choice", [750, 1500, 3000]),
    },
    "best": {
        **_COMMON,
        "model.dim": ("choice", [128, 192, 256]),
        "train.steps": ("choice", [1500, 3000, 6000]),
    },
}


def space_for(config: Any) -> dict[str, tuple[Any, ...]]:
    """The search space of a config: its tune.space, else its preset's (balanced when it has none)."""
    if config.tune.space:
        return {key: tuple(spec) for key, spec in config.tune.space.items()}
    return SPACES[config.preset or "balanced"]
