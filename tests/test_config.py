"""Config: defaults, YAML round trip, --set typing, and the exact one-line error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mumo.config import Config, build_config, dump_config, load_config, parse_overrides
from mumo.config_model import GRUOptions, TransformerOptions
from mumo.errors import ConfigError


def _minimal() -> dict[str, Any]:
    return {"data": {"train": "data/train.csv"}}


def _error(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(raw, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ defaults, round trip
def test_defaults_validate() -> None:
    config = build_config(_minimal())
    assert config.name == "mumo"
    assert config.data.train == "data/train.csv"
    assert config.data.on_error == "fail"
    assert config.model.dim == 128
    assert config.model.fusion is None  # auto: cross when text meets an image or audio column, else concat
    assert config.model.align is None  # auto: on when two of text, image, audio meet
    assert config.task.type == "auto"
    assert config.train.steps == "auto"
    assert config.train.epochs == "auto" and config.train.patience == "auto"
    assert config.train.precision == "32-true"


def test_dump_then_build_round_trips_to_an_equal_config() -> None:
    raw = {
        "name": "rt",
        "data": {
            "train": "a.csv",
            "val": "b.jsonl",
            "target": ["x", "y"],
            "columns": {"caption": "text", "price": "numeric"},
            "image": {"size": 32, "mean": [0.1, 0.2, 0.3]},
        },
        "model": {"dim": 32, "encoders": {"caption": {"type": "gru", "layers": 2}}},
        "task": "multilabel",
        "train": {"epochs": 3, "lr": 3.0e-4, "devices": 2},
    }
    config = build_config(raw)
    text = dump_config(config)
    dumped = yaml.safe_load(text)
    # every default is written out
    assert dumped["task"] == {"type": "multilabel"}  # multilabel has no options of its own
    assert dumped["data"]["text"]["max_length"] == 64
    assert dumped["model"]["encoders"]["caption"] == {"type": "gru", "layers": 2, "dropout": 0.1}
    again = build_config(dumped)
    assert again == config
    assert isinstance(again.model.encoders["caption"], GRUOptions)
    assert dump_config(again) == text


# ---------------------------------------------------------------------------------------- --set
def test_parse_overrides_types_values() -> None:
    parsed = parse_overrides(["a=3", "b=1e-3", "c=true", "d=[32, 64]", "e=hello", " f.g = 2.5 "])
    assert parsed == {"a": 3, "b": 0.001, "c": True, "d": [32, 64], "e": "hello", "f.g": 2.5}
    assert type(parsed["a"]) is int
    assert type(parsed["b"]) is float
    assert type(parsed["c"]) is bool
    assert type(parsed["d"]) is list and all(type(v) is int for v in parsed["d"])
    assert type(parsed["e"]) is str


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(["novalue"])
    assert str(info.value) == "--set 'novalue': expected key=value, e.g. --set train.epochs=3"


def test_overrides_apply_to_nested_keys() -> None:
    config = build_config(
        _minimal(), parse_overrides(["train.epochs=3", "model.dim=32", "data.text.max_length=8"])
    )
    assert config.train.epochs == 3
    assert config.model.dim == 32
    assert config.data.text.max_length == 8


# --------------------------------------------------------------------------------------- errors
def test_unknown_key_suggests_the_close_one() -> None:
    message = _error({**_minimal(), "train": {"epoch": 3}})
    assert message == (
        "train.epoch: unknown key (did you mean 'epochs'?); valid keys: epochs, steps, time_limit, batch_size, "
        "lr, weight_decay, warmup, grad_clip, patience, monitor, seed, precision, accelerator, devices, "
        "strategy, num_nodes, accumulate, progress, baseline"
    )


def test_unknown_key_inside_an_encoder_lists_that_encoders_keys() -> None:
    raw = {**_minimal(), "model": {"encoders": {"cap": {"type": "gru", "layerz": 2}}}}
    assert _error(raw) == (
        "model.encoders.cap.layerz: unknown key (did you mean 'layers'?); valid keys: type, layers, dropout"
    )


def test_invalid_literal_lists_the_choices() -> None:
    raw = {"data": {"train": "a.csv", "on_error": "ignore"}}
    assert _error(raw) == "data.on_error: 'ignore' is not valid; choose one of 'fail', 'skip' or 'absent'"


def test_invalid_encoder_type_lists_the_choices() -> None:
    raw = {**_minimal(), "model": {"encoders": {"cap": {"type": "rnn"}}}}
    assert _error(raw) == (
        "model.encoders.cap.type: 'rnn' is not a valid type; "
        "choose one of 'transformer', 'gru', 'bow', 'cnn', 'conv1d', 'mlp', 'embedding', 'hf'"
    )


def test_bad_number_names_the_key_and_the_value() -> None:
    assert _error({**_minimal(), "train": {"lr": "fast"}}) == (
        "train.lr: input should be a valid number, unable to parse string as a number (got 'fast')"
    )
    assert _error({**_minimal(), "train": {"epochs": 0}}) == (
        "train.epochs: 0 is not valid; give a whole number from 1, or auto"
    )
    assert _error({**_minimal(), "train": {"patience": "lots"}}) == (
        "train.patience: 'lots' is not valid; give a whole number from 1, or auto"
    )
    assert _error({**_minimal(), "train": {"time_limit": "soon"}}) == (
        "train.time_limit: 'soon' is not a duration; write e.g. 90s, 10m or 1.5h"
    )


def test_missing_data_section() -> None:
    assert (
        _error({"model": {"dim": 32}}) == "config: data.train is required (a manifest path or builtin:<name>)"
    )
    assert _error({"data": {"target": "y"}}) == "data.train: required"


def test_error_from_a_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  dim: 32\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: data.train is required (a manifest path or builtin:<name>)"


# ------------------------------------------------------------------------------ task shorthand
def test_task_string_shorthand() -> None:
    config = build_config({**_minimal(), "task": "classification"})
    assert config.task.type == "classification"
    assert config.task.label_smoothing == 0.0


def test_set_on_a_task_shorthand() -> None:
    raw = {**_minimal(), "task": "classification"}
    config = build_config(raw, parse_overrides(["task.label_smoothing=0.1"]))
    assert config.task.type == "classification"
    assert config.task.label_smoothing == 0.1
    assert raw["task"] == "classification"  # the caller's dict is not modified


def test_task_options_exist_only_where_they_mean_something() -> None:
    contrastive = build_config({**_minimal(), "task": {"type": "contrastive", "loss": "sigmoid"}})
    assert yaml.safe_load(dump_config(contrastive))["task"] == {
        "type": "contrastive",
        "pairs": None,
        "loss": "sigmoid",
        "temperature": 0.07,
        "projection": None,
    }
    assert _error({**_minimal(), "task": {"type": "regression", "pairs": [["a", "b"]]}}) == (
        "task.pairs: unknown key; valid keys: type"
    )
    assert _error({**_minimal(), "task": {"type": "classification", "label_smoothng": 0.1}}) == (
        "task.label_smoothng: unknown key (did you mean 'label_smoothing'?); valid keys: type, label_smoothing"
    )
    assert _error({**_minimal(), "task": {"type": "clasification"}}).startswith(
        "task.type: 'clasification' is not a task; choose one of classification, contrastive, generation, image_generation, matching"
    )


def test_auto_task_keeps_keys_of_some_task_and_refuses_others() -> None:
    config = build_config({**_minimal(), "task": {"label_smoothing": 0.2}})
    assert config.task.type == "auto" and config.task.model_extra == {"label_smoothing": 0.2}
    assert _error({**_minimal(), "task": {"smoothing": 0.2}}).startswith("task.smoothing: unknown key")


def test_unknown_key_inside_a_tagged_union_names_the_path_and_keys() -> None:
    """Every tag is derived from the union: `hf` was missing from a hand-written table once."""
    raw = {**_minimal(), "model": {"encoders": {"cap": {"type": "hf", "pretrained": "x", "poolng": "mean"}}}}
    message = _error(raw)
    assert message.startswith(
        "model.encoders.cap.poolng: unknown key (did you mean 'pooling'?); valid keys: type,"
    )
    assert "pretrained" in message
    # a column named like an encoder type is a key, not a tag
    raw = {**_minimal(), "model": {"encoders": {"cnn": {"type": "cnn", "chanels": [8]}}}}
    assert _error(raw).startswith("model.encoders.cnn.chanels: unknown key (did you mean 'channels'?)")


def test_tag_tables_are_derived_from_the_unions() -> None:
    from mumo.config_model import ENCODER_OPTIONS, FUSION_OPTIONS

    assert set(ENCODER_OPTIONS) == {"transformer", "gru", "bow", "cnn", "conv1d", "mlp", "embedding", "hf"}
    assert set(FUSION_OPTIONS) == {
        "concat",
        "gated",
        "attention",
        "late",
        "lrtf",
        "film",
        "bilinear",
        "cross",
    }
    assert all(
        cls.__name__.endswith("Options") for cls in [*ENCODER_OPTIONS.values(), *FUSION_OPTIONS.values()]
    )


def test_set_on_a_value_is_an_error() -> None:
    message = _error({**_minimal(), "train": {"epochs": 3}}, {"train.epochs.x": 1})
    assert message == "train.epochs: is a value, not a section; cannot set train.epochs.x"


# -------------------------------------------------------------------------------------- files
def test_load_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: q\ndata:\n  train: t.csv\nmodel:\n  encoders: {cap: {type: transformer, layers: 1}}\n"
    )
    config = load_config(path, {"train.epochs": 2})
    assert isinstance(config, Config)
    assert config.name == "q"
    assert config.model.encoders["cap"] == TransformerOptions(layers=1)
    assert config.train.epochs == 2


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  train: a.csv\nmodel:\n  dim: 32\n   fusion: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} line 5: not valid YAML (")


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: config file not found"


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: a config is a mapping with data/model/task/train sections"
