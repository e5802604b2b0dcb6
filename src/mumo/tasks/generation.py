"""task: generation — any inputs → a text column: image → caption, image + question → answer, audio →
transcript, text → text.

The inputs are encoded and fused as for any task; a decoder (mumo.decoders) writes the target from the
fused output: `lm`, a causal language model whose prefix is the fused vector and tokens, or `ctc` over the
fused frames (speech). Validation decodes greedily every epoch, so checkpoints are chosen by what is
generated, not only by the loss.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mumo.config import TaskOptions
from mumo.config_model import Conv1dOptions, CTCDecoderOptions, LMDecoderOptions, ModelConfig
from mumo.data.dataset import Batch, make_batch
from mumo.data.prepare import Schema, Split
from mumo.data.table import Table
from mumo.data.targets import TargetProcessor, TextTarget
from mumo.decoders import Decoding, build_decoder
from mumo.errors import ConfigError, DataError
from mumo.metrics_text import TEXT_DIRECTIONS, sentence_scores, text_metrics
from mumo.network import FusedNetwork, MultimodalNetwork, build_body
from mumo.report import cell_html, note
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, Task

if TYPE_CHECKING:
    from mumo.baseline import NearestBaseline
    from mumo.predictor import Predictor

Metric = Literal["exact_match", "token_accuracy", "bleu", "chrf", "cider", "wer", "cer"]
SHORT = 3  # words in the median train target up to which exact match is the main metric (answers)
SHOWN = 6  # best and worst rows in the report


class GenerationOptions(TaskOptions):
    type: Literal["generation"] = "generation"
    metric: Metric | None = Field(
        None,
        description="Main metric (checkpoints, early stopping, the baseline comparison); null = exact_match "
        "when the median train target has at most 3 words (answers), else bleu.",
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Pieces generated at most; null = the longest train target and half again."
    )
    num_beams: int = Field(1, ge=1, description="Beam search width (1 = greedy).")
    length_penalty: float = Field(1.0, description="Beam search: > 1 favours longer texts, < 1 shorter.")
    do_sample: bool = Field(False, description="Sample instead of searching.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(
        1.0, gt=0, le=1, description="Sampling: keep the smallest set of pieces with this mass."
    )
    num_return_sequences: int = Field(
        1, ge=1, description="Texts per row: the first is `generated`, all are `alternatives`."
    )
    seed: int = Field(0, description="Seed of sampling: the same seed gives the same texts.")

    @model_validator(mode="after")
    def _enough_beams(self) -> GenerationOptions:
        if not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) needs num_beams >= it, or do_sample: true"
            )
        return self


class GenerationNetwork(FusedNetwork):
    """Encoders and fusion → the fused vector and tokens → the decoder (lm or ctc)."""

    def __init__(self, body: MultimodalNetwork, decoder: nn.Module) -> None:
        super().__init__(body)
        self.decoder = decoder

    def fused(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """What the decoder reads of the fused inputs (tokens (B, T, D) and their mask)."""
        return self.decoder.inputs(self.fuse(batch))  # type: ignore[operator,no-any-return]

    def loss(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        assert batch.target is not None
        return self.decoder.loss(*self.fused(batch), batch.target)  # type: ignore[operator,no-any-return]

    def generate(self, batch: Batch, decoding: Decoding) -> Tensor:
        return self.decoder.generate(*self.fused(batch), decoding)  # type: ignore[operator,no-any-return]

    def forward(self, batch: Batch) -> Tensor:
        return self.loss(batch)[0]


@TASKS.register("generation")
class Generation(Task):
    """Cross-entropy on the target's pieces; predictions are the generated text (and its alternatives)."""

    name = "generation"
    Options = GenerationOptions
    target_class = TextTarget
    one_target = True
    options: GenerationOptions
    target: TextTarget

    @classmethod
    def resolve_model(cls, model: ModelConfig, inputs: dict[str, str]) -> ModelConfig:
        """Audio inputs default to the conv1d encoder (frames that keep their place and full spectrum, for
        speech); the decoder defaults to ctc when every input is audio (speech recognition), else lm."""
        encoders = dict(model.encoders)
        for column, kind in inputs.items():
            if kind == "audio" and column not in encoders:
                encoders[column] = Conv1dOptions()
        decoder = model.decoder
        if decoder is None:
            speech = all(kind == "audio" for kind in inputs.values())
            decoder = CTCDecoderOptions() if speech else LMDecoderOptions()
        return model.model_copy(update={"encoders": encoders, "decoder": decoder})

    @classmethod
    def check_data(cls, schema: Schema, train: Table) -> None:
        if not any(v is not None and str(v).strip() for v in train.values(schema.targets[0])):
            raise DataError(f"target {schema.targets[0]!r} has no text in train", file=train.name)

    @classmethod
    def make_target(cls, columns: list[str], model: ModelConfig | None = None) -> TargetProcessor | None:
        decoder = model.decoder if model is not None else None
        if isinstance(decoder, CTCDecoderOptions):  # characters: no merges, only the alphabet
            vocab = 1 if decoder.units == "chars" else decoder.vocab_size
            order = decoder.lm_order if decoder.beam > 1 else 0
            extra = _lines(decoder.lm_text, "model.decoder.lm_text") if order and decoder.lm_text else []
            return TextTarget(columns, vocab, decoder.max_length, ngram_order=order, ngram_texts=extra)
        decoder = decoder or LMDecoderOptions()
        source = None
        if decoder.pretrained is not None:
            from mumo.modalities.hf import resolve_pretrained

            source = resolve_pretrained(decoder.pretrained, "model.decoder.pretrained")
        return TextTarget(columns, decoder.vocab_size, decoder.max_length, source)

    # --------------------------------------------------------------------------- network and training
    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        body = build_body(model, self.inputs, processors)
        return GenerationNetwork(body, build_decoder(model.decoder, model.dim, self.target))

    def training_loss(self, network: nn.Module, batch: Batch) -> Tensor:
        return network.loss(batch)[0]  # type: ignore[operator]

    @property
    def max_new_tokens(self) -> int:
        if self.options.max_new_tokens is not None:
            return self.options.max_new_tokens
        longest = self.target.longest + 1  # and its end
        return min(longest + max(4, longest // 2), self.target.max_length + 1)

    def decoding(self, greedy: bool = False) -> Decoding:
        """The task's decoding options (greedy: one greedy text per row, as validation uses)."""
        if greedy:
            return Decoding(self.max_new_tokens, greedy=True)
        o = self.options
        return Decoding(
            self.max_new_tokens,
            o.num_beams,
            o.length_penalty,
            o.do_sample,
            o.temperature,
            o.top_p,
            o.num_return_sequences,
        )

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """outputs: per row the greedy text's pieces, then the target pieces predicted right with teacher
        forcing, and the target's pieces."""
        assert batch.target is not None
        loss, right, total = network.loss(batch)  # type: ignore[operator]
        generated = network.generate(batch, self.decoding(greedy=True))  # type: ignore[operator]
        counts = torch.stack([right, total], dim=1).to(generated.device)
        return loss, torch.cat([generated, counts], dim=1), batch.target

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        references = self.target.decode_batch(targets)
        generated = self.target.decode_batch(outputs[:, :-2])
        right, total = outputs[:, -2].sum().item(), outputs[:, -1].sum().item()
        return {**text_metrics(references, generated), "token_accuracy": right / total if total else math.nan}

    def directions(self) -> dict[str, Direction]:
        return {**TEXT_DIRECTIONS, "loss": "min"}  # type: ignore[dict-item]

    @property
    def main_metric(self) -> str:
        if self.options.metric is not None:
            return self.options.metric
        return "exact_match" if self.target.median_words <= SHORT else "bleu"

    # ------------------------------------------------------------------------------------- prediction
    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        """(B, R * max_new_tokens): the R = num_return_sequences texts of each row, side by side."""
        decoding = self.decoding()
        with torch.random.fork_rng(devices=[]):  # sampling repeats for a seed, and leaves no trace
            torch.manual_seed(self.options.seed)
            ids = network.generate(batch, decoding)  # type: ignore[operator]
        return ids.reshape(len(batch), -1)

    def texts(self, outputs: Tensor) -> list[list[str]]:
        """The R texts of each row of predict_outputs()."""
        width = outputs.shape[1] // max(self.options.num_return_sequences, 1)
        rows = outputs.reshape(outputs.shape[0], -1, width) if len(outputs) else outputs.reshape(0, 1, width)
        return [[self.target.decode(ids) for ids in row] for row in rows.tolist()]

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        results = []
        for texts in self.texts(outputs):
            row: dict[str, Any] = {"generated": texts[0]}
            if self.options.num_return_sequences > 1:
                row["alternatives"] = texts
            results.append(row)
        return results

    def skipped_row(self) -> dict[str, Any]:
        return {"generated": None, "skipped": True}

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        """Text metrics of what the task's decoding generates, and teacher-forced token accuracy."""
        generated = [texts[0] for texts in self.texts(predictor.outputs(split, absent=absent))]
        references = [self.target.decode(ids) for ids in split.targets]
        right = total = 0
        hidden = set(absent)
        with torch.no_grad():
            for start in range(0, len(split), 256):
                rows = range(start, min(start + 256, len(split)))
                items = {c: [None] * len(rows) if c in hidden else split.take(c, rows) for c in split.items}
                targets = [split.targets[i] for i in rows]
                batch = make_batch(items, predictor.processors, targets, self.target, train=False)
                _, batch_right, batch_total = predictor.network.loss(batch)  # type: ignore[operator]
                right, total = right + int(batch_right.sum()), total + int(batch_total.sum())
        metrics = {
            **text_metrics(references, generated),
            "token_accuracy": right / total if total else math.nan,
        }
        return Evaluated(metrics, {"references": references, "generated": generated})

    def baseline(self) -> NearestBaseline:
        from mumo.baseline import NearestBaseline

        return NearestBaseline(self.max_new_tokens)

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        references, generated = evaluated.details["references"], evaluated.details["generated"]
        if not references:
            return [("Generated text", note("No rows to show."))]
        scores = np.asarray(sentence_scores(references, generated))
        order = np.argsort(-scores, kind="stable")
        picked = list(order[:SHOWN]) + [i for i in order[::-1][:SHOWN] if i not in order[:SHOWN]]
        columns = list(self.inputs)
        numbers = {table.row_number(i): i for i in range(len(table))} if table is not None else {}
        cells = {c: table.values(c) for c in columns if c in table.columns} if table is not None else {}
        rows = []
        for i in picked:
            index = numbers.get(split.rows[i])
            shown = [
                cell_html(cells[c][index], kind, table.base_dir)
                if table is not None and index is not None and c in cells
                else "<i>-</i>"
                for c, kind in self.inputs.items()
            ]
            texts = [escape(references[i]), escape(generated[i]) or "<i>(empty)</i>", f"{scores[i]:.1f}"]
            rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in [*shown, *texts]) + "</tr>")
        head = "".join(f"<th>{escape(h)}</th>" for h in [*columns, "reference", "generated", "chrF"])
        html = note(
            f"The {SHOWN} best and {SHOWN} worst rows of this split by sentence chrF (0-100) of the generated "
            "text against the reference."
        )
        return [
            (
                "Generated text",
                f"{html}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
            )
        ]


def _lines(path: str, key: str) -> list[str]:
    """The non-empty lines of a text file named by config key `key`."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key}: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
