"""Bad input on the command line: exit 2 with one `mumo: error:` line naming file, row and column.

DESIGN.md §2 "Absent values and bad rows" and "CLI". Rows are 1-based data rows (header not counted).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli, tiny_overrides
from mumo.cli import main

# ------------------------------------------------------------------------------------------ helpers


def error_line(stderr: str, *parts: str) -> str:
    """The single `mumo: error:` line of a failed command; it must contain every one of `parts`."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    line = lines[0]
    assert line.startswith("mumo: error:"), line
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    return line


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mumo ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def splits(folder: Path) -> list[str]:
    """--train/--val/--test flags for a shapes folder (val and test given: no split of train)."""
    return [
        "--train",
        str(folder / "train.csv"),
        "--val",
        str(folder / "val.csv"),
        "--test",
        str(folder / "test.csv"),
        "--target",
        "label",
    ]


def read_rows(manifest: Path) -> list[list[str]]:
    with manifest.open(newline="") as f:
        return list(csv.reader(f))


def write_rows(manifest: Path, rows: list[list[str]]) -> None:
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def set_cell(manifest: Path, row: int, column: str, value: str) -> str:
    """Set data row `row` (1-based, header not counted) of `column`; returns the old value."""
    rows = read_rows(manifest)
    index = rows[0].index(column)
    old, rows[row][index] = rows[row][index], value
    write_rows(manifest, rows)
    return old


def cell(manifest: Path, row: int, column: str) -> str:
    rows = read_rows(manifest)
    return rows[row][rows[0].index(column)]


# --------------------------------------------------------------------------- 1-5: bad cells, fail


def test_missing_image_file(shapes_copy: Path, tmp_path: Path) -> None:
    train = shapes_copy / "train.csv"
    (shapes_copy / cell(train, 3, "image")).unlink()
    result = run_cli("train", *splits(shapes_copy), "--out", str(tmp_path / "run"), *tiny_overrides())
    assert result.returncode == 2, result.stderr
    error_line(result.stderr, str(train), "row 3", "column 'image'", "file not found")


def test_missing_image_row_number_when_val_is_split_off(
    capsys: pytest.CaptureFixture[str], shapes_copy: Path, tmp_path: Path
) -> None:
    """Without --val, part of train is held out: rows must still be numbered as in the manifest."""
    train = shapes_copy / "train.csv"
    (shapes_copy / cell(train, 5, "image")).unlink()
    args = ["--train", str(train), "--target", "label", "--out", str(tmp_path / "run")]
    code, _, err = cli(capsys, "train", *args, *tiny_overrides())
    assert code == 2
    error_line(err, str(train), "row 5,", "column 'image'", "file not found")


def test_truncated_png(capsys: pytest.CaptureFixture[str], shapes_copy: Path, tmp_path: Path) -> None:
    train = shapes_copy / "train.csv"
    png = shapes_copy / cell(train, 3, "image")
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    code, _, err = cli(
        capsys, "train", *splits(shapes_copy), "--out", str(tmp_path / "run"), *tiny_overrides()
    )
    assert code == 2
    error_line(err, str(train), "row 3", "column 'image'", "cannot decode")


def test_wav_that_is_not_audio(capsys: pytest.CaptureFixture[str], shapes_copy: Path, tmp_path: Path) -> None:
    train = shapes_copy / "train.csv"
    (shapes_copy / cell(train, 4, "sound")).write_bytes(b"this is plain text, not a RIFF file\n" * 20)
    code, _, err = cli(
        capsys, "train", *splits(shapes_copy), "--out", str(tmp_path / "run"), *tiny_overrides()
    )
    assert code == 2
    error_line(err, str(train), "row 4", "column 'sound'", "cannot decode audio")


def test_empty_target_cell(capsys: pytest.CaptureFixture[str], shapes_copy: Path, tmp_path: Path) -> None:
    train = shapes_copy / "train.csv"
    set_cell(train, 7, "label", "")
    code, _, err = cli(
        capsys, "train", *splits(shapes_copy), "--out", str(tmp_path / "run"), *tiny_overrides()
    )
    assert code == 2
    error_line(err, str(train), "row 7", "column 'label'", "empty target")


def test_non_number_in_numeric_column(
    capsys: pytest.CaptureFixture[str], shapes_copy: Path, tmp_path: Path
) -> None:
    train = shapes_copy / "train.csv"
    set_cell(train, 9, "weight", "heavy")
    code, _, err = cli(
        capsys, "train", *splits(shapes_copy), "--out", str(tmp_path / "run"), *tiny_overrides()
    )
    assert code == 2
    error_line(err, str(train), "row 9", "column 'weight'", "'heavy' is not a number")


# ------------------------------------------------------------------------------- 6-9: config, args


def test_unknown_config_key_in_set(
    capsys: pytest.CaptureFixture[str], shapes_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, _, err = cli(
        capsys, "train", *splits(shapes_dir), "--out", str(out), *tiny_overrides(), "--set", "train.epoch=3"
    )
    assert code == 2
    line = error_line(err, "train.epoch:", "unknown key", "valid keys")
    assert "epochs" in line and "batch_size" in line and "lr" in line
    assert not out.exists() or not any(out.iterdir())


def test_unknown_config_key_in_yaml(
    capsys: pytest.CaptureFixture[str], shapes_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data:\n  train: {shapes_dir / 'train.csv'}\n  target: label\nmodle:\n  dim: 32\ntrain:\n  epochs: 1\n"
    )
    code, _, err = cli(capsys, "train", str(config), "--out", str(tmp_path / "run"), *tiny_overrides())
    assert code == 2
    line = error_line(err, "modle", "unknown key", "valid keys")
    for key in ("data", "model", "task", "train"):
        assert key in line.split("valid keys", 1)[1]


@pytest.mark.parametrize(
    ("override", "key"),
    [("data.on_error=sometimes", "data.on_error"), ("train.lr=abc", "train.lr")],
)
def test_bad_config_value(
    capsys: pytest.CaptureFixture[str], shapes_dir: Path, tmp_path: Path, override: str, key: str
) -> None:
    code, _, err = cli(
        capsys,
        "train",
        *splits(shapes_dir),
        "--out",
        str(tmp_path / "run"),
        *tiny_overrides(),
        "--set",
        override,
    )
    assert code == 2
    error_line(err, key, override.split("=")[1])


def test_encoder_type_of_the_wrong_kind(
    capsys: pytest.CaptureFixture[str], shapes_dir: Path, tmp_path: Path
) -> None:
    code, _, err = cli(
        capsys,
        "train",
        *splits(shapes_dir),
        "--out",
        str(tmp_path / "run"),
        *tiny_overrides(),
        "--set",
        "model.encoders.image.type=gru",
    )
    assert code == 2
    line = error_line(err, "model.encoders.image.type", "'gru'", "image encoder")
    assert "cnn" in line.split("image encoder", 1)[1]  # the valid choices are listed


def test_manifest_not_found(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "train.csv"
    code, _, err = cli(
        capsys,
        "train",
        "--train",
        str(missing),
        "--target",
        "label",
        "--out",
        str(tmp_path / "run"),
        *tiny_overrides(),
    )
    assert code == 2
    error_line(err, str(missing), "not found")


def test_target_not_in_manifest(capsys: pytest.CaptureFixture[str], shapes_dir: Path, tmp_path: Path) -> None:
    args = ["--train", str(shapes_dir / "train.csv"), "--target", "colour", "--out", str(tmp_path / "run")]
    code, _, err = cli(capsys, "train", *args, *tiny_overrides())
    assert code == 2
    error_line(err, str(shapes_dir / "train.csv"), "'colour'", "not in the manifest")


# ------------------------------------------------------------------ 10-11, 13, 15: runs on bad rows
# 13 and 15 reuse the run trained with --on-error absent (one training for three tests).

SMALL = 40  # train rows of the damaged runs (fast)
MISSING_ROW, EMPTY_TARGET_ROW = 3, 6


@pytest.fixture(scope="module")
def damaged(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of shapes with a 40-row train_skip.csv (row 3: image file missing, row 6: empty label)
    and train_absent.csv (the same rows, only the missing image)."""
    folder = tmp_path_factory.mktemp("damaged") / "shapes"
    shutil.copytree(shapes_dir, folder)
    rows = read_rows(folder / "train.csv")[: SMALL + 1]
    write_rows(folder / "train_absent.csv", rows)
    write_rows(folder / "train_skip.csv", rows)
    (folder / cell(folder / "train_skip.csv", MISSING_ROW, "image")).unlink()
    set_cell(folder / "train_skip.csv", EMPTY_TARGET_ROW, "label", "")
    return folder


def _train_damaged(folder: Path, manifest: str, on_error: str, out: Path):
    return run_cli(
        "train",
        "--train",
        str(folder / manifest),
        "--val",
        str(folder / "val.csv"),
        "--test",
        str(folder / "test.csv"),
        "--target",
        "label",
        "--on-error",
        on_error,
        "--out",
        str(out),
        *tiny_overrides(),
        env={"COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def skip_run(damaged: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("skip") / "run"
    return out, _train_damaged(damaged, "train_skip.csv", "skip", out)


def test_on_error_skip_drops_and_reports_rows(skip_run) -> None:
    out, result = skip_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert (out / "metrics.json").is_file()
    assert {"val", "test"} <= set(json.loads((out / "metrics.json").read_text()))
    text = result.stdout + result.stderr
    assert "train: 2 rows skipped" in text
    assert "1 × file not found" in text
    assert "1 × empty target" in text
    rows = re.search(r"rows: train (\d+)", text)
    assert rows is not None, text
    assert int(rows.group(1)) == SMALL - 2


@pytest.fixture(scope="module")
def absent_run(damaged: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("absent") / "run"
    return out, _train_damaged(damaged, "train_absent.csv", "absent", out)


def test_on_error_absent_keeps_row_and_reports_cell(absent_run) -> None:
    out, result = absent_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert (out / "metrics.json").is_file()
    text = result.stdout + result.stderr
    assert re.search(r"train: 1 cells? treated as absent \(1 × file not found", text), text
    assert "skipped" not in text
    rows = re.search(r"rows: train (\d+)", text)
    assert rows is not None and int(rows.group(1)) == SMALL


def test_predict_input_file_that_does_not_exist(absent_run) -> None:
    out, trained = absent_run
    assert trained.returncode == 0
    result = run_cli("predict", str(out), "--input", "image=does-not-exist.png")
    assert result.returncode == 2
    error_line(result.stderr, "does-not-exist.png", "image")


def test_train_into_an_existing_run_keeps_it(
    capsys: pytest.CaptureFixture[str], absent_run, shapes_dir: Path
) -> None:
    out, trained = absent_run
    assert trained.returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = cli(capsys, "train", *splits(shapes_dir), "--out", str(out), *tiny_overrides())
    assert code == 2
    error_line(err, str(out))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after[Path("model.safetensors")] == before[Path("model.safetensors")]
    assert after == before


# ------------------------------------------------------------------------------------ 12: data check


def test_data_check_lists_every_problem(shapes_copy: Path) -> None:
    train, val = shapes_copy / "train.csv", shapes_copy / "val.csv"
    (shapes_copy / cell(train, 3, "image")).unlink()
    set_cell(train, 6, "label", "")
    set_cell(train, 8, "weight", "heavy")
    (shapes_copy / cell(val, 2, "sound")).write_bytes(b"not audio" * 50)
    result = run_cli(
        "data", "check", "--train", str(train), "--val", str(val), "--target", "label", env={"COLUMNS": "80"}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    expected = [
        (train, 3, "image", "file not found"),
        (train, 6, "label", "empty target"),
        (train, 8, "weight", "'heavy' is not a number"),
        (val, 2, "sound", "cannot decode audio"),
    ]
    lines = result.stdout.splitlines()
    problem_lines = [line for line in lines if re.search(r", row \d+, column ", line)]
    assert len(problem_lines) == len(expected), result.stdout
    for file, row, column, reason in expected:
        wanted = f"{file}, row {row}, column {column!r}: {reason}"
        assert any(wanted in line for line in lines), f"no line with {wanted!r} in:\n{result.stdout}"


def test_data_check_clean_dataset(capsys: pytest.CaptureFixture[str], shapes_dir: Path) -> None:
    code, out, _ = cli(capsys, "data", "check", *splits(shapes_dir))
    assert code == 0
    assert "no problems found" in out


# ------------------------------------------------------------------------------------ 14: eval


def test_eval_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    result = run_cli("eval", str(folder))
    assert result.returncode == 2
    error_line(result.stderr, str(folder))


def test_bench_refuses_a_folder_as_output_before_measuring(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "bench", "--quick", "--markdown", str(tmp_path))
    assert code == 2
    assert err.strip() == f"mumo: error: --markdown: {tmp_path} is a folder; give a file path"
