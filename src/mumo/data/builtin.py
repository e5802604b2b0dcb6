"""Built-in datasets (`data.train: builtin:<name>`): generated locally from a seed, cached on disk."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mumo.config import DataConfig
from mumo.errors import ConfigError, MumoError
from mumo.registry import Registry

BUILTINS: Registry[Callable[..., dict[str, Path]]] = Registry("a builtin dataset")
DEFAULT_TARGET = {
    "shapes": "label",
    "shapes-interaction": "label",
    "shapes-captions": "caption",
    "shapes-qa": "answer",
    "shapes-speech": "transcript",
    "shapes-draw": "image",
}


def _shapes(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed)


def _shapes_interaction(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    """builtin:shapes with label = (round shape) XOR (low pitch): neither image nor sound alone helps."""
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed, label="interaction")


def _shapes_captions(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    """builtin:shapes' images and captions only: image → caption."""
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed, variant="captions")


def _shapes_qa(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    """builtin:shapes' images with a question each and its short answer: image + question → answer."""
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed, variant="qa")


def _shapes_speech(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    """builtin:shapes' descriptions spoken by espeak-ng (several voices; half of test in a voice train never
    hears) with their transcripts: speech → text."""
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed, variant="speech")


def _shapes_draw(out_dir: Path, n: int, seed: int) -> dict[str, Path]:
    """builtin:shapes' captions → images, some colour-shape pairs only in test: text → image."""
    from mumo.data.shapes import make_shapes

    return make_shapes(out_dir, n=n, seed=seed, variant="draw")


BUILTINS.register("shapes")(_shapes)
BUILTINS.register("shapes-captions")(_shapes_captions)
BUILTINS.register("shapes-qa")(_shapes_qa)
BUILTINS.register("shapes-speech")(_shapes_speech)
BUILTINS.register("shapes-draw")(_shapes_draw)
BUILTINS.register("shapes-interaction")(_shapes_interaction)


def cache_root() -> Path:
    return Path(os.environ.get("MUMO_CACHE", Path.home() / ".cache" / "mumo"))


@functools.cache
def generator_version() -> str:
    """A digest of the code that writes the builtin datasets: a cached copy made by other code (a column
    added, a rendering changed) is not reused."""
    import hashlib

    digest = hashlib.sha256()
    for module in ("builtin.py", "shapes.py", "shapes_tasks.py", "speech.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:8]


def materialize(name: str, n: int, seed: int, out_dir: Path | None = None) -> dict[str, Path]:
    """Generate builtin:<name> into out_dir (default: the cache), atomically; reuse it if already there."""
    make = BUILTINS.get(name, key="data.train")
    final = out_dir or cache_root() / "builtin" / f"{name}-n{n}-seed{seed}-{generator_version()}"
    if (final / "train.csv").is_file():
        return {split: final / f"{split}.csv" for split in ("train", "val", "test")}
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary folder
    try:
        make(tmp, n, seed)
        if out_dir is None:
            if final.exists():
                shutil.rmtree(final)  # our own cache folder, left incomplete (no train.csv)
            os.replace(tmp, final)
        else:
            _move_into(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {split: final / f"{split}.csv" for split in ("train", "val", "test")}


def _move_into(source: Path, folder: Path) -> None:
    """Move generated entries into a user's folder, keeping whatever else it holds; never overwrite.
    A new (or empty) folder is the generated one, renamed into place in one step."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if not folder.exists():
        os.replace(source, folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    clashes = sorted(entry.name for entry in source.iterdir() if (folder / entry.name).exists())
    if clashes:
        raise MumoError(f"{folder}: already holds {', '.join(clashes)}; choose another folder")
    for entry in sorted(source.iterdir(), key=lambda e: e.suffix == ".csv"):  # manifests last
        os.replace(entry, folder / entry.name)
    source.rmdir()


def resolve_builtin(data: DataConfig) -> DataConfig:
    """Replace builtin:<name> by the generated manifests; fills target/val/test when they are unset."""
    if not data.train.startswith("builtin:"):
        return data
    name = data.train.split(":", 1)[1]
    if name not in BUILTINS:
        raise ConfigError(
            f"data.train: {data.train!r} is not a builtin dataset; choose one of "
            + ", ".join(f"builtin:{b}" for b in BUILTINS.names())
        )
    paths = materialize(name, data.builtin.n, data.builtin.seed)
    return data.model_copy(
        update={
            "train": str(paths["train"]),
            "val": data.val or str(paths["val"]),
            "test": data.test or str(paths["test"]),
            "target": data.target or DEFAULT_TARGET.get(name),
        }
    )
