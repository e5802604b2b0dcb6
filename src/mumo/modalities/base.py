"""What every modality provides: a processor (cells → tensors) and encoders (tensors → EncoderOutput)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mumo.cells import CellError
from mumo.io import write_json
from mumo.registry import Registry


class Processor:
    """Turns cells of one column into model inputs. Fitted on train only; saved as JSON (+ tokenizer.json).

    Lifecycle: fit(train cells) → load(cell) for every row (validates and decodes, result may be cached)
    → finish(loaded train items) for statistics of decoded data → collate(items, train) per batch.
    """

    kind: str = ""
    # collate() treats each row on its own, without randomness, into fixed-shape tensors: a split can
    # then be collated once and batches taken from it by index.
    fixed_rows: bool = False

    def __init__(self, column: str) -> None:
        self.column = column

    @property
    def key(self) -> str:
        """Name in the PROCESSORS registry (the kind, or kind/encoder-type for a backbone's own processor)."""
        return self.kind

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        """Learn what is needed from raw train cells; bad cells are ignored here and reported by load()."""

    def load(self, cell: Any, base_dir: Path) -> Any:
        """Decode one cell; raise CellError with a short reason when it is bad."""
        raise NotImplementedError

    def load_cell(self, cell: Any, base_dir: Path) -> tuple[Any, str | None]:
        """(decoded item, None), (None, why it is bad), or (None, None) for an absent cell."""
        if cell is None:
            return None, None
        try:
            return self.load(cell, base_dir), None
        except CellError as err:
            return None, str(err)

    def load_many(self, cells: list[Any], base_dir: Path) -> list[tuple[Any, str | None]]:
        """load_cell for a whole column (a processor may do it faster than cell by cell)."""
        return [self.load_cell(cell, base_dir) for cell in cells]

    def finish(self, items: list[Any]) -> None:
        """Statistics that need decoded train items (e.g. normalization)."""

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        """Stack a batch; None marks an absent cell (its slot gets a placeholder the model never encodes)."""
        raise NotImplementedError

    def baseline_features(self, items: list[Any | None]) -> Any:
        """Cheap raw features of decoded items for the linear baseline every run fits (mumo.baseline): a
        dense (N, F) array, or a sparse (N, F) matrix of counts; None when the column has none. An absent
        item gives a row of zeros."""
        return None

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted processor, as JSON."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, folder: Path) -> None:
        """Write to folder/processor.json (folder is preprocess/<column>/)."""
        write_json(folder / "processor.json", {"kind": self.kind, "processor": self.key, **self.state()})

    def restore(self, folder: Path) -> None:
        state = json.loads((folder / "processor.json").read_text())
        state.pop("kind", None)
        state.pop("processor", None)
        self.set_state(state)


def placeholder_rows(items: list[Any | None], example: Any) -> list[Any]:
    """Fill absent slots with a real example's shape so the batch stacks; the model never encodes them."""
    return [example if item is None else item for item in items]


# An encoder is registered under (kind, type) and built as cls(options, dim, processor).
ENCODERS: Registry[type[nn.Module]] = Registry("an encoder")
PROCESSORS: Registry[type[Processor]] = Registry("a column kind")


def encoder_key(kind: str, type_: str) -> str:
    return f"{kind}/{type_}"


def length_order(items: list[Any]) -> list[int]:
    """Row order for inference batches: token sequences longest first (so a batch pads little, as
    sentence-transformers does), anything else as it is."""
    lengths = [len(item) if isinstance(item, list) else 0 for item in items]
    if not any(lengths):
        return list(range(len(items)))
    return sorted(range(len(items)), key=lambda i: -lengths[i])


__all__ = ["ENCODERS", "PROCESSORS", "Processor", "encoder_key", "length_order", "placeholder_rows"]
