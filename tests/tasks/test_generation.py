"""task: generation — the target tokenizer, text metrics, the decoder's positions and masking, batched
decoding equal to one row at a time, decoding options, the decoder using the image, and reload in a fresh
process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import run_cli

import mumo
from mumo.cells import CellError
from mumo.config_model import LMDecoderOptions
from mumo.data.builtin import materialize
from mumo.data.dataset import make_batch
from mumo.data.speech import espeak_available
from mumo.data.table import read_table
from mumo.data.targets import TextTarget
from mumo.decoders import Decoding, build_lm_decoder, position_ids
from mumo.errors import MumoError
from mumo.metrics_text import text_metrics

DIM = 32
TINY = {
    "dim": DIM,
    "encoders": {"image": {"type": "cnn", "channels": [16, 32]}},
    "decoder": {"layers": 1, "heads": 2},
}


# ------------------------------------------------------------------------------------ the target
def test_text_target_round_trip() -> None:
    target = TextTarget(["caption"], vocab_size=200)
    target.fit([["A big red circle."], ["a small blue square"], [None], ["two  spaces here"]] * 3)
    ids = target.encode(["A big red circle."])
    assert ids[-1] == target.eos and target.pad not in ids
    assert target.decode(ids) == "A big red circle."
    assert target.decode(target.encode(["Zebra 42"])) == "Zebra 42"  # unseen ASCII still spells
    stacked = target.stack([ids, target.encode(["a"])])
    assert stacked.shape == (2, target.max_length + 1)
    assert target.decode_batch(stacked) == ["A big red circle.", "a"]
    restored = TextTarget(["caption"])
    restored.set_state(json.loads(json.dumps(target.state())))
    assert restored.decode(restored.encode(["two  spaces here"])) == target.decode(
        target.encode(["two  spaces here"])
    )
    assert (target.longest, target.median_words) == (len(ids) - 1, 4.0)
    with pytest.raises(CellError, match="^empty target$"):
        target.encode(["   "])


def test_text_metrics() -> None:
    references = ["A red circle.", "blue square", "the cat sat"]
    metrics = text_metrics(references, ["a red circle", "blue", "the cat sat"])
    assert metrics["exact_match"] == pytest.approx(2 / 3)  # case and the final full stop do not count
    assert metrics["wer"] == pytest.approx(1 / 8)  # one word missing of eight
    assert metrics["cer"] == pytest.approx(7 / 34)  # " square" missing of 34 characters
    perfect = text_metrics(["red", "a blue square"], ["red", "a blue square"])
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)  # one word: not 0
    assert perfect["wer"] == 0 and perfect["cer"] == 0 and perfect["exact_match"] == 1
    assert 0 < text_metrics(["a red circle"], ["a red square"])["bleu"] < 100


# ----------------------------------------------------------------------------------- the decoder
def _decoder(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    target = TextTarget(["text"], vocab_size=40)
    target.fit([[f"word{i} and more words {i % 7}"] for i in range(50)])
    return build_lm_decoder(LMDecoderOptions(layers=2, heads=2), DIM, target).eval()


def test_position_ids_are_the_ones_generate_derives() -> None:
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    lm = _decoder().lm
    expected = lm._prepare_position_ids_for_generation(torch.zeros(3, 6), {"attention_mask": mask})
    assert torch.equal(position_ids(mask), expected)


def test_padding_inside_the_prefix_changes_nothing() -> None:
    """A row's teacher-forced logits are the same alone and beside a row with more input tokens (its
    prefix then has masked padding at the end), whatever the padding holds."""
    decoder = _decoder()
    tokens = torch.randn(2, 7, DIM)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    targets = torch.tensor([[5, 6, 7, 3, -1, -1], [8, 3, -1, -1, -1, -1]])
    with torch.no_grad():
        batched, real = decoder.logits(tokens, mask, targets)
        alone, _ = decoder.logits(tokens[:1, :4], mask[:1, :4], targets[:1])
        tokens[0, 4:] = 100.0  # what sits behind the mask
        again, _ = decoder.logits(tokens, mask, targets)
    assert real[0].tolist() == [True] * 4 and real[1].tolist() == [True, True, False, False]
    assert torch.allclose(batched[0], alone[0], atol=1e-5)
    assert torch.allclose(batched[0], again[0], atol=1e-5)
    loss, right, total = decoder.loss(tokens, mask, targets)
    assert total.tolist() == [4, 2]  # the loss counts target pieces and their end, nothing else
    assert torch.isfinite(loss)


@pytest.mark.parametrize("beams", [1, 3])
def test_batched_decoding_equals_one_row_at_a_time(beams: int) -> None:
    decoder = _decoder(1)
    tokens = torch.randn(3, 6, DIM)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 2:] = False
    mask[2, 5:] = False
    decoding = Decoding(8, num_beams=beams, num_return_sequences=beams)
    batched = decoder.generate(tokens, mask, decoding)
    assert batched.shape == (3 * beams, 8)
    for row in range(3):
        length = int(mask[row].sum())
        alone = decoder.generate(tokens[row : row + 1, :length], mask[row : row + 1, :length], decoding)
        assert torch.equal(batched[row * beams : (row + 1) * beams], alone)


# ------------------------------------------------------------------------------- trained runs
@pytest.fixture(scope="module")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {
        "name": "qa",
        "data": {"train": "builtin:shapes-qa", "builtin": {"n": 400}},
        "task": {"type": "generation"},
        "model": TINY,
        "train": {"epochs": 4, "batch_size": 32, "progress": False},
    }
    return mumo.train(config, out=tmp_path_factory.mktemp("qa") / "run", quiet=True)


def test_generation_run_reports_its_metrics_and_baseline(qa_run: Any) -> None:
    metrics = qa_run.metrics["test"]
    assert qa_run.model.task.main_metric == "exact_match"  # one- or two-word answers
    for name in ("exact_match", "token_accuracy", "bleu", "chrf", "cider", "wer", "cer"):
        assert name in metrics and f"baseline/{name}" in metrics
    assert 0 <= metrics["exact_match"] <= 1 and metrics["token_accuracy"] > 0.3
    report = (qa_run.path / "report.html").read_text()
    assert "<h2>Generated text</h2>" in report and "<img" in report  # thumbnails of the images


def test_batched_prediction_equals_one_row_at_a_time(qa_run: Any) -> None:
    model = qa_run.model
    test = materialize("shapes-qa", 400, 0)["test"]
    base = test.parent
    rows = pd.read_csv(test)[["image", "question"]].head(12).to_dict("records")
    batched = [r["generated"] for r in model.predict(rows, base_dir=base)]
    alone = [model.predict([row], base_dir=base)[0]["generated"] for row in rows]
    assert batched == alone
    assert any(text for text in batched)


def test_decoding_options_at_predict_time(qa_run: Any) -> None:
    model = qa_run.model
    test = materialize("shapes-qa", 400, 0)["test"]
    base = test.parent
    rows = pd.read_csv(test)[["image", "question"]].head(8).to_dict("records")
    beams = model.with_task_options({"task.num_beams": 3, "task.num_return_sequences": 3}).predict(
        rows, base_dir=base
    )
    assert all(len(r["alternatives"]) == 3 and r["alternatives"][0] == r["generated"] for r in beams)
    sampling = {"do_sample": True, "temperature": 3.0, "seed": 5}
    first = [r["generated"] for r in model.with_task_options(sampling).predict(rows, base_dir=base)]
    second = [r["generated"] for r in model.with_task_options(sampling).predict(rows, base_dir=base)]
    other = [
        r["generated"] for r in model.with_task_options({**sampling, "seed": 6}).predict(rows, base_dir=base)
    ]
    assert first == second  # the same seed, the same texts
    assert first != other
    with pytest.raises(
        MumoError, match=r"^--set task.beams: not an option of task generation \(its options: "
    ):
        model.with_task_options({"task.beams": 3})


def test_reloaded_in_a_fresh_process_generates_the_same_text(qa_run: Any, tmp_path: Path) -> None:
    test = materialize("shapes-qa", 400, 0)["test"]
    out = tmp_path / "predictions.csv"
    result = run_cli("predict", str(qa_run.path), "--data", str(test), "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == ["row", "generated"]
    expected = [r["generated"] for r in qa_run.model.predict(str(test))]
    assert written["generated"].tolist() == expected


@pytest.fixture(scope="module")
def caption_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {
        "name": "captions",
        "data": {"train": "builtin:shapes-captions", "builtin": {"n": 1000}},
        "model": TINY,
        "train": {"epochs": 12, "batch_size": 16, "lr": 2e-3, "progress": False, "baseline": False},
    }
    return mumo.train(config, out=tmp_path_factory.mktemp("captions") / "run", quiet=True)


def test_captions_are_generated_from_the_image(caption_run: Any) -> None:
    """task: auto picks generation for a caption column; the loss rises when images are shuffled against
    their captions, so the decoder reads the image, not only the language prior."""
    model = caption_run.model
    assert model.task.name == "generation" and model.task.main_metric == "bleu"
    split = model.prepare(read_table(materialize("shapes-captions", 1000, 0)["val"]), with_target=True)
    rows = list(range(len(split)))
    shuffled = rows[1:] + rows[:1]
    losses = []
    with torch.no_grad():
        for order in (rows, shuffled):
            items = {"image": split.take("image", order)}
            batch = make_batch(items, model.processors, split.targets, model.target, train=False)
            losses.append(float(model.network.loss(batch)[0]))
    assert losses[1] > 1.5 * losses[0], losses


# ------------------------------------------------------------------------- a pretrained decoder
def _tiny_llama(folder: Path) -> None:
    """A random LlamaForCausalLM (tied embeddings) and its fast tokenizer, written with save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from mumo.data.shapes import COLORS, SHAPES

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    words = [f"a {c} {s} on the left of the picture" for c in COLORS for s in SHAPES]
    trainer = trainers.BpeTrainer(
        vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tokenizer.train_from_iterator(words * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=160,  # padded past the tokenizer's vocabulary, as real checkpoints often are
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


def test_pretrained_decoder_with_lora_reloads_offline(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    _tiny_llama(folder)
    config = {
        "name": "pretrained-decoder",
        "data": {"train": "builtin:shapes-captions", "builtin": {"n": 200}},
        "model": {**TINY, "decoder": {"pretrained": str(folder), "lora": {"r": 4}}},
        "train": {"epochs": 2, "batch_size": 32, "progress": False, "baseline": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    network = run.model.network
    lora = [n for n, p in network.named_parameters() if "lora_" in n and p.requires_grad]
    base = [n for n, p in network.named_parameters() if n.startswith("decoder.lm.") and "lora_" not in n]
    assert lora and base
    assert not any(dict(network.named_parameters())[n].requires_grad for n in base)  # only adapters train
    assert run.model.target.eos == 2 and run.model.target.bos == 1  # the LM's own special tokens
    test = materialize("shapes-captions", 200, 0)["test"]
    expected = [r["generated"] for r in run.model.predict(str(test))]
    for path in sorted(folder.iterdir()):  # the run must not need the pretrained folder any more
        path.unlink()
    folder.rmdir()
    out = tmp_path / "predictions.csv"
    result = run_cli(
        "predict", str(run.path), "--data", str(test), "--out", str(out), env={"HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(out, keep_default_na=False)["generated"].tolist() == expected


# ----------------------------------------------------------------------------------- ctc decoder
def test_ctc_greedy_decoding_stops_at_each_rows_own_length() -> None:
    from mumo.config_model import CTCDecoderOptions
    from mumo.decoders import CTCDecoder

    decoder = CTCDecoder(CTCDecoderOptions(layers=0, upsample=1), DIM, 6, blank=0, eos=3).eval()
    logits = torch.full((2, 6, 6), -5.0)
    for row, units in enumerate([[4, 4, 0, 4, 5, 5], [5, 0, 4, 4, 5, 5]]):
        logits[row, torch.arange(6), torch.tensor(units)] = 5.0
    # repeats merge, blanks split them; row 1 has 3 real steps, the rest is padding it must not decode
    assert decoder.greedy(logits, torch.tensor([6, 3])) == [[4, 4, 5], [5, 4]]


def test_ctc_decoder_trains_and_decodes_rows_alone_as_in_a_batch() -> None:
    from mumo.config_model import CTCDecoderOptions
    from mumo.decoders import CTCDecoder

    torch.manual_seed(0)
    decoder = CTCDecoder(CTCDecoderOptions(layers=1, upsample=2), DIM, 8, blank=0, eos=3)
    tokens = torch.randn(4, 6, DIM)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = mask[3, 2:] = False
    targets = torch.tensor([[4, 5, 6, 3, -1], [5, 5, 3, -1, -1], [7, 3, -1, -1, -1], [4, 5, 6, 7, 3]])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(150):  # row 3 wants 4 units from 4 steps: CTC can fit it (no repeats)
        optimizer.zero_grad()
        loss, right, total = decoder.loss(tokens, mask, targets)
        loss.backward()
        optimizer.step()
    assert total.tolist() == [3, 2, 1, 4]  # the end-of-text piece is not a CTC target
    decoder.eval()
    ids = decoder.generate(tokens, mask, Decoding(6))
    assert ids[:, :5].tolist() == [[4, 5, 6, 3, 0], [5, 5, 3, 0, 0], [7, 3, 0, 0, 0], [4, 5, 6, 7, 3]]
    for row in range(4):
        length = int(mask[row].sum())
        alone = decoder.generate(tokens[row : row + 1, :length], mask[row : row + 1, :length], Decoding(6))
        assert torch.equal(alone[0], ids[row])
    with pytest.raises(MumoError, match="ctc writes one text per row"):
        decoder.generate(tokens, mask, Decoding(6, num_beams=2, num_return_sequences=2))


# ---------------------------------------------------------------------------------------- speech
needs_espeak = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed (apt-get install -y espeak-ng; make install does it where it can)",
)


@needs_espeak
def test_speech_defaults_to_ctc_over_conv1d_frames_and_reloads(tmp_path: Path) -> None:
    config = {
        "name": "speech",
        "data": {"train": "builtin:shapes-speech", "builtin": {"n": 60}},
        "model": {"dim": DIM, "encoders": {"speech": {"type": "conv1d", "channels": [32, 32]}}},
        "train": {"epochs": 2, "batch_size": 16, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    written = run.model.config.model
    assert written.decoder is not None and written.decoder.type == "ctc"  # every input is audio
    assert run.model.target.decode(run.model.target.encode(["a red circle"])) == "a red circle"
    assert {"wer", "cer", "baseline/wer"} <= set(run.metrics["test"])
    test = materialize("shapes-speech", 60, 0)["test"]
    transcripts = pd.read_csv(test)["transcript"].tolist()
    assert all(t == " ".join(t.split()) and t == t.lower() for t in transcripts)  # words only, lower case
    expected = [r["generated"] for r in run.model.predict(str(test))]
    assert [r["generated"] for r in mumo.load(run.path).predict(str(test))] == expected


def test_unit_ngram_is_a_distribution_and_round_trips() -> None:
    from mumo.ngram import END, UnitNgram

    lm = UnitNgram(3, vocab=6)
    lm.fit([[4, 5, 4, 5], [4, 5, 5], [5, 4]])
    for history in [(), (4,), (4, 5), (2, 2)]:
        total = sum(lm.prob(history, u) for u in [*range(6), END])
        assert total == pytest.approx(1.0)
    assert lm.prob((4,), 5) > lm.prob((4,), 4)
    again = UnitNgram.from_state(json.loads(json.dumps(lm.state())))
    assert again.prob((4, 5), 4) == lm.prob((4, 5), 4)


def test_prefix_beam_search_with_a_language_model() -> None:

    from mumo.ngram import UnitNgram, prefix_beam_search

    blank = 0
    peaked = np.log(np.full((5, 4), 0.01))
    for t, unit in enumerate([1, 1, 0, 1, 2]):  # greedy: 1 (repeat merged), blank, 1, 2 → [1, 1, 2]
        peaked[t, unit] = np.log(0.97)
    assert prefix_beam_search(peaked, blank, beam=4) == [1, 1, 2]
    # an ambiguous step (unit 2 or 3 alike): the language model, which has only seen 1 → 3, decides
    ambiguous = np.log(np.array([[0.02, 0.96, 0.01, 0.01], [0.02, 0.01, 0.485, 0.485]]))
    lm = UnitNgram(2, vocab=4)
    lm.fit([[1, 3]] * 5)
    assert prefix_beam_search(ambiguous, blank, beam=4, lm=lm, lm_weight=1.0) == [1, 3]


def test_lm_text_feeds_the_language_model_and_a_missing_file_is_one_line(tmp_path: Path) -> None:
    from mumo.config_model import ModelConfig
    from mumo.tasks.generation import Generation

    (tmp_path / "more.txt").write_text("zebra quartz\n\nzebra quartz jump\n", encoding="utf-8")
    plain, fed = (
        Generation.make_target(
            ["text"], ModelConfig.model_validate({"decoder": {"type": "ctc", "lm_order": 3, **extra}})
        )
        for extra in ({}, {"lm_text": str(tmp_path / "more.txt")})
    )
    for target in (plain, fed):
        target.fit([["a red circle"], ["a blue square"]])
    ids = fed.tokenizer.encode("zebra quartz", add_special_tokens=False).ids  # type: ignore[union-attr]

    def likelihood(lm: Any) -> float:
        return float(np.prod([lm.prob(tuple(ids[:i]), unit) for i, unit in enumerate(ids)]))

    assert likelihood(fed.ngram) > 1000 * likelihood(plain.ngram)
    missing = ModelConfig.model_validate({"decoder": {"type": "ctc", "lm_text": str(tmp_path / "none.txt")}})
    with pytest.raises(
        MumoError, match=r"^model.decoder.lm_text: cannot read .*none.txt: No such file or directory$"
    ):
        Generation.make_target(["text"], missing)
