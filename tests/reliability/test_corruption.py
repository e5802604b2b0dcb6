"""Each file of a run folder truncated, deleted or edited in turn: `mumo predict` exits 2 with one line
naming that file when it is one loading needs, and `mumo check` names every damaged file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mumo.cli import main
from mumo.rundir import MANIFEST, MODEL_FILES

DAMAGES = ("truncate", "delete", "edit")


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "delete":
        path.unlink()
    else:  # one byte changed in the middle: the same size, only the contents differ
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])


@pytest.fixture(scope="module")
def run(table_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corrupt") / "run"
    args = ["train", "--train", str(table_dir / "train.csv"), "--target", "label", "--set", "data.ignore=[y,z,m1,m2]",
            "--set", "train.epochs=1", "--set", "model.dim=8", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out


def needed(name: str) -> bool:
    return name == MANIFEST or any(name == p or (p.endswith("/") and name.startswith(p)) for p in MODEL_FILES)


def test_every_damage_to_every_file_is_named(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: pytest.RecordProperty
) -> None:
    files = [*json.loads((run / MANIFEST).read_text())["files"], MANIFEST]
    assert {
        "config.yaml",
        "model.safetensors",
        "preprocess/schema.json",
        "split.json",
        "metrics.json",
    } <= set(files)
    tried = named_by_predict = named_by_check = 0
    for name in files:
        for how in DAMAGES:
            copy = tmp_path / f"{how}-{name.replace('/', '_')}" / "run"
            shutil.copytree(run, copy)
            damage(copy / name, how)
            tried += 1
            capsys.readouterr()
            code = main(["predict", str(copy), "--input", "x=1.5", "caption=a red square"])
            err = capsys.readouterr().err.strip().splitlines()
            if needed(name):
                assert code == 2, (name, how)
                assert len(err) == 1 and err[0].startswith(f"mumo: error: {copy / name}: "), (name, how, err)
                named_by_predict += 1
            else:  # not needed to predict (report, logs, checkpoints): predict works, check names it
                assert code == 0, (name, how, err)
            if name != MANIFEST:
                assert main(["check", str(copy)]) == 2, (name, how)
                assert str(copy / name) in capsys.readouterr().out
                named_by_check += 1
            shutil.rmtree(copy.parent)
    record_property("corruptions", {"tried": tried, "predict": named_by_predict, "check": named_by_check})
    print(f"corruptions tried {tried}; named by predict {named_by_predict}; by check {named_by_check}")
    assert tried == 3 * len(files) and named_by_check == 3 * (len(files) - 1)
