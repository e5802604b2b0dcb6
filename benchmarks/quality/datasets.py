"""The quality datasets by name: what each holds, how it is made, and where it is cached."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.quality.digits import (
    make_digits_regression,
    make_digits_speech,
    make_digits_sum,
    make_digits_table,
)
from benchmarks.quality.relational import make_relational_match, make_relational_qa
from mumo.data.builtin import cache_root

Kind = Literal["image", "audio", "text", "numeric"]


@dataclass(frozen=True)
class Spec:
    """One dataset: its input columns and their kinds, target, task, default row count, and the function
    that writes it (folder, n, seed)."""

    name: str
    task: Literal["classification", "regression"]
    target: str
    inputs: dict[str, Kind]
    n: int
    make: Callable[[Path, int, int], None]
    speech: bool = False  # needs espeak-ng

    def modalities(self) -> list[Kind]:
        return sorted(set(self.inputs.values()))


PIXELS: dict[str, Kind] = {f"p{j}": "numeric" for j in range(64)}
DATASETS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("digits-speech", "classification", "label", {"image": "image", "sound": "audio"}, 1797, make_digits_speech, True),
        Spec("digits-sum", "classification", "label", {"image": "image", "sound": "audio"}, 3000, make_digits_sum, True),
        Spec("relational-match", "classification", "label", {"image": "image", "caption": "text"}, 4000, make_relational_match),
        Spec("relational-qa", "classification", "answer", {"image": "image", "question": "text"}, 4000, make_relational_qa),
        Spec("digits-regression", "regression", "value", {"image": "image", "sound": "audio"}, 3000, make_digits_regression, True),
        Spec("digits-table", "classification", "label", PIXELS, 1797, make_digits_table),
    )
}  # fmt: skip


def folder_for(spec: Spec, seed: int, n: int | None = None, root: Path | None = None) -> Path:
    """$MUMO_CACHE/quality/<name>-seed<seed>/ (with -n<n> before -seed when n is not the default)."""
    size = "" if n is None or n == spec.n else f"-n{n}"
    return (root or cache_root() / "quality") / f"{spec.name}{size}-seed{seed}"


def materialize(name: str, seed: int = 0, n: int | None = None, root: Path | None = None) -> Path:
    """The dataset's folder (train.csv, val.csv, test.csv and files), generated into a temp folder and
    renamed into place, or reused when already there."""
    spec = DATASETS[name]
    final = folder_for(spec, seed, n, root)
    if (final / "train.csv").is_file():
        return final
    if final.exists():
        raise RuntimeError(f"{final}: exists but holds no train.csv; remove it and run again")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary folder
    try:
        spec.make(tmp, spec.n if n is None else n, seed)
        os.rename(tmp, final)  # fails if another process finished first: then theirs is used
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (final / "train.csv").is_file():
            return final
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
