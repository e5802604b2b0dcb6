"""The reliability report's cases, each as a regression test: nothing a user has is lost, nothing is
silently wrong, no traceback, and every error names the right thing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from mumo.cli import main
from mumo.modalities.image import decode_image

TINY = ["--set", "train.epochs=1", "--set", "model.dim=8", "--set", "train.batch_size=16", "--quiet"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(err: str) -> str:
    """The single line an error must be."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mumo: error: "), err
    return lines[0].removeprefix("mumo: error: ")


def tree(folder: Path) -> dict[str, str]:
    """Every file under folder with its sha256: what "byte-identical" compares."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_args(table_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(table_dir / "train.csv"), "--val", str(table_dir / "val.csv"),
            "--target", "label", "--set", "data.ignore=[y,z,m1,m2]", "--out", str(out), *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def finished(table_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "keep"
    assert main(train_args(table_dir, out)) == 0
    return out


# ------------------------------------------------------------------------------------- data loss
def test_overwrite_with_a_typo_in_the_manifest_keeps_the_run(
    capsys: pytest.CaptureFixture[str], finished: Path, table_dir: Path
) -> None:
    before = tree(finished)
    code, _, err = cli(capsys, "train", "--train", table_dir / "trian.csv", "--target", "label",
                       "--out", finished, "--overwrite", *TINY)  # fmt: skip
    assert code == 2
    assert one_error(err) == f"{table_dir / 'trian.csv'}: manifest not found"
    assert tree(finished) == before


def test_overwrite_refuses_a_folder_with_the_users_own_files(
    capsys: pytest.CaptureFixture[str], table_dir: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    (mine / "logs").mkdir(parents=True)
    (mine / "config.yaml").write_text("my: config\n")
    (mine / "logs" / "notes.txt").write_text("my notes\n")
    code, _, err = cli(capsys, *train_args(table_dir, mine, "--overwrite"))
    assert code == 2
    assert one_error(err).startswith(f"--overwrite {mine}: not a run folder mumo wrote (no manifest.json)")
    assert (mine / "config.yaml").read_text() == "my: config\n"
    assert (mine / "logs" / "notes.txt").read_text() == "my notes\n"


def test_overwrite_refuses_a_run_holding_a_file_mumo_did_not_write(
    capsys: pytest.CaptureFixture[str], finished: Path, table_dir: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "logs" / "notes.txt").write_text("mine\n")
    before = tree(run)
    code, _, err = cli(capsys, *train_args(table_dir, run, "--overwrite"))
    assert code == 2
    assert one_error(err) == (
        f"--overwrite {run}: holds files mumo did not write (logs/notes.txt); move them out first or choose another --out"
    )
    assert tree(run) == before


def test_overwrite_where_logs_is_a_symlink_deletes_nothing(
    capsys: pytest.CaptureFixture[str], finished: Path, table_dir: Path, tmp_path: Path
) -> None:
    import shutil

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    shutil.copytree(finished, run)
    shutil.move(run / "logs", elsewhere)
    os.symlink(elsewhere, run / "logs")
    before, linked = tree(run), tree(elsewhere)
    code, _, err = cli(capsys, *train_args(table_dir, run, "--overwrite"))
    assert code == 2
    assert "holds files mumo did not write (logs" in one_error(err)
    assert tree(run) == before and tree(elsewhere) == linked and (run / "metrics.json").is_file()


def test_overwrite_replaces_a_run_mumo_wrote(finished: Path, table_dir: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    assert main(train_args(table_dir, run, "--overwrite", "--set", "train.seed=7")) == 0
    assert "seed: 7" in (run / "config.yaml").read_text()
    assert main(["check", str(run)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or lock left beside it


def test_two_trainings_into_one_folder_at_once(table_dir: Path, tmp_path: Path) -> None:
    """The second stops at once, naming the process that holds the folder, and writes nothing."""
    import signal

    out = tmp_path / "run"
    args = [sys.executable, "-m", "mumo.cli", *train_args(table_dir, out, "--set", "train.patience=100000")]
    args[args.index("train.epochs=1")] = "train.epochs=100000"  # training when SIGINT comes
    # SIGINT as a terminal sends it: a shell that starts the suite in the background (`make test &`)
    # hands every child SIGINT ignored, and the training would rightly ignore it too
    first = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lock = tmp_path / ".run.lock"
        deadline = time.time() + 60
        while not (tmp_path / ".run.partial" / "config.yaml").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert lock.exists()
        second = subprocess.run(
            [sys.executable, "-m", "mumo.cli", *train_args(table_dir, out, "--set", "train.seed=5")],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert first.poll() is None, "the first training ended before the second was refused"
        assert second.returncode == 2
        assert one_error(second.stderr).startswith(f"{out}: another mumo (pid {first.pid} on ")
        assert "seed: 0" in (tmp_path / ".run.partial" / "config.yaml").read_text()  # the first's, untouched
    finally:
        first.send_signal(signal.SIGINT)  # interrupted: its checkpoint waits for --resume
        try:
            first.wait(
                timeout=240
            )  # a loaded machine (a clean-clone run beside two trainings) took over 60 s
        except subprocess.TimeoutExpired:
            first.kill()
            _, stderr = first.communicate()
            raise AssertionError(
                f"the first training ignored SIGINT for 240 s; its stderr ends: {stderr[-2000:]}"
            ) from None
        if first.stderr:
            first.stderr.close()
    assert not out.exists() and not lock.exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(table_dir: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (tmp_path / ".run.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert main(train_args(table_dir, tmp_path / "run")) == 0
    assert not (tmp_path / ".run.lock").exists()


# ------------------------------------------------------------------------------- silently wrong
def test_16_bit_grey_png_keeps_its_brightness(tmp_path: Path) -> None:
    levels = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(levels).save(tmp_path / "g.png")
    pixels = decode_image(tmp_path / "g.png", 16)
    assert pixels[:, :, 0][::8, ::8].tolist() == [[0, 64], [128, 255]]


def test_numeric_column_with_non_finite_cells_stays_numeric(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    weight = [f"{v:.3f}" for v in rng.normal(size=60)]
    for row, bad in ((5, "NaN"), (11, "inf"), (17, "1e400"), (23, "nan"), (29, "-inf"), (35, "NaN")):
        weight[row] = bad
    frame = pd.DataFrame({"weight": weight, "label": ["a", "b"] * 30})
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, out, _ = cli(capsys, "data", "check", "--train", tmp_path / "t.csv", "--target", "label")
    assert code == 2
    assert "weight (numeric)" in out
    assert f"{tmp_path / 't.csv'}, row 6, column 'weight': 'NaN' is not a number" in out
    code, _, err = cli(
        capsys, "train", "--train", tmp_path / "t.csv", "--target", "label", "--out", tmp_path / "r", *TINY
    )
    assert code == 2
    assert one_error(err).startswith(f"{tmp_path / 't.csv'}, row 6, column 'weight': 'NaN' is not a number")
    code, _, err = cli(capsys, "train", "--train", tmp_path / "t.csv", "--target", "label", "--out", tmp_path / "r",
                       "--on-error", "absent", *TINY)  # fmt: skip
    assert code == 0
    schema = json.loads((tmp_path / "r" / "preprocess" / "schema.json").read_text())
    assert ["weight", "numeric"] in schema["inputs"]


def test_decompression_bomb_is_refused_before_decoding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    Image.new("L", (20000, 20000)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "ok.png")
    frame = pd.DataFrame({"image": ["ok.png"] * 9 + ["bomb.png"], "label": ["a", "b"] * 5})
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, out, _ = cli(capsys, "data", "check", "--train", tmp_path / "t.csv", "--target", "label")
    assert code == 2
    assert (
        "row 10, column 'image': image bomb.png is 20000x20000 (400 megapixels), more than "
        "data.image.max_pixels (50 megapixels)" in out
    )


def test_image_paths_without_an_extension_are_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for i in range(20):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(tmp_path / f"photo{i}", format="JPEG")
    pd.DataFrame({"photo": [f"photo{i}" for i in range(20)], "label": ["a", "b"] * 10}).to_csv(
        tmp_path / "t.csv", index=False
    )
    code, out, _ = cli(capsys, "data", "check", "--train", tmp_path / "t.csv", "--target", "label")
    assert code == 0, out
    assert "photo (image)" in out
    assert "photo: image (files without an image extension, recognised by their first bytes (JPEG))" in out


# ------------------------------------------------------------------------------------ tracebacks
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncate model.safetensors", "model.safetensors: {size}, expected {full} (truncated?)"),
        ("edit config.yaml", "config.yaml: changed since mumo wrote it (sha256 differs); restore it or train again"),
        ("delete preprocess/schema.json", "preprocess/schema.json: missing (listed in manifest.json); restore the run folder or train again"),
        ("edit preprocess/x/processor.json", "preprocess/x/processor.json: changed since mumo wrote it (sha256 differs); restore it or train again"),
    ],
)  # fmt: skip
def test_damaged_run_is_one_line(
    capsys: pytest.CaptureFixture[str], finished: Path, tmp_path: Path, damage: str, expected: str
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    action, name = damage.split(" ")
    path = run / name
    full = path.stat().st_size
    if action == "truncate":
        path.write_bytes(path.read_bytes()[: full // 2])
    elif action == "delete":
        path.unlink()
    else:
        text = path.read_text()  # the same size, other contents: only the hash tells
        path.write_text(text.replace("16", "17", 1) if name.endswith(".yaml") else text.replace(".", ",", 1))
    from mumo.rundir import _size

    code, _, err = cli(capsys, "predict", run, "--input", "x=1")
    assert code == 2
    assert one_error(err) == f"{run}/" + expected.format(size=_size(full // 2), full=_size(full))


def test_output_paths(
    capsys: pytest.CaptureFixture[str], finished: Path, table_dir: Path, tmp_path: Path
) -> None:
    deep = tmp_path / "nodir" / "sub" / "p.csv"
    assert cli(capsys, "predict", finished, "--data", table_dir / "test.csv", "--out", deep)[0] == 0
    assert len(pd.read_csv(deep)) == 30
    code, _, err = cli(capsys, "predict", finished, "--data", table_dir / "test.csv", "--out", tmp_path)
    assert code == 2 and one_error(err).startswith(f"--out {tmp_path}: is a folder; give a file path")
    (tmp_path / "afile").write_text("mine")
    code, _, err = cli(capsys, *train_args(table_dir, tmp_path / "afile"))
    assert (
        code == 2
        and one_error(err)
        == f"--out {tmp_path / 'afile'}: is a file; give a folder for the run (it is created)"
    )
    assert (tmp_path / "afile").read_text() == "mine"


# ---------------------------------------------------------------------- errors at the right place
def test_three_row_dataset_keeps_every_class_in_train(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]}).to_csv(tmp_path / "t.csv", index=False)
    code, out, err = cli(capsys, "train", "--train", tmp_path / "t.csv", "--target", "label", "--out",
                         tmp_path / "r", "--set", "train.epochs=1", "--set", "model.dim=8")  # fmt: skip
    assert code == 0, err
    assert "val has no rows of 1 classes (b): too few rows to hold one out" in err
    assert json.loads((tmp_path / "r" / "split.json").read_text()) == {"val": {"from": "train", "rows": [3]}}


def test_header_only_and_empty_manifests(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("image,label\n")
    (tmp_path / "e.csv").write_text("")
    code, _, err = cli(
        capsys, "train", "--train", tmp_path / "h.csv", "--target", "label", "--out", tmp_path / "r"
    )
    assert code == 2 and one_error(err) == f"{tmp_path / 'h.csv'}: no data rows (only a header)"
    code, _, err = cli(
        capsys, "train", "--train", tmp_path / "e.csv", "--target", "label", "--out", tmp_path / "r"
    )
    assert code == 2 and one_error(err) == f"{tmp_path / 'e.csv'}: empty file: no header and no data rows"


def test_broken_jsonl_line_is_named_by_its_number(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = [json.dumps({"x": i, "label": "ab"[i % 2]}) for i in range(6)]
    lines[3] = '{"x": 3, "label": "b"'
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = cli(capsys, "data", "check", "--train", tmp_path / "t.jsonl", "--target", "label")
    assert code == 2
    assert one_error(err).startswith(f"{tmp_path / 't.jsonl'}: line 4: not valid JSON (")


def test_eval_of_a_run_with_split_off_val_uses_those_rows(
    capsys: pytest.CaptureFixture[str], table_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    code, _, err = cli(capsys, "train", "--train", table_dir / "train.csv", "--target", "label",
                       "--set", "data.ignore=[y,z,m1,m2]", "--out", out, *TINY)  # fmt: skip
    assert code == 0, err
    code, printed, err = cli(capsys, "eval", out, "--json")
    assert code == 0, err
    saved = json.loads((out / "metrics.json").read_text())["val"]
    model = {key: value for key, value in saved.items() if not key.startswith("baseline/")}
    assert json.loads(printed)["val"] == pytest.approx(model, abs=1e-9)
    assert (
        len(json.loads((out / "split.json").read_text())["val"]["rows"]) == 12
    )  # round(0.15 x 30) per class
