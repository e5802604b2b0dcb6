"""A run folder written as a unit. Training works in a staging folder beside the destination
(`.NAME.partial`), under a lock (`.NAME.lock`); only when the weights, metrics and report are written is
manifest.json added and the folder moved into place, so `--out` holds either what it held before or a
complete run, whatever happens in between. `--overwrite` replaces only a folder mumo made (it has a
manifest and nothing else), checked before any work starts and again at the swap; a killed run stays
in its staging folder for `--resume`."""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

from mumo.errors import MumoError
from mumo.lock import Lock
from mumo.rundir import MANIFEST, WEIGHTS, foreign_entries, read_manifest, write_manifest

CHECKPOINT = Path("checkpoints") / "last.ckpt"
PARTIAL_MARK = ".mumo-partial"  # inside a staging folder: mumo made it


class RunWriter:
    """Where a run is trained (`work`) and how it reaches `out`."""

    def __init__(self, out: Path, *, overwrite: bool = False, resume: bool = False) -> None:
        self.out, self.overwrite, self.resume = out, overwrite, resume
        self.staging = staging(out)
        self.lock = Lock(out.parent / f".{out.name}.lock", str(out))
        self.work = self.staging
        self.check()

    # ------------------------------------------------------------------------------------ checks
    def check(self) -> None:
        """Refuse, before anything is read or written, what the run may not do to --out."""
        self.lock.check()  # another mumo writing this run is named first
        self.check_destination()

    def check_destination(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise MumoError(f"--out {out}: is a file; give a folder for the run (it is created)")
        if self.resume:
            if (self.staging / CHECKPOINT).is_file():
                self.work = self.staging
            elif (out / CHECKPOINT).is_file() and not (out / WEIGHTS).is_file():
                self.work = out  # interrupted by mumo 0.1, which trained in place
            elif (out / WEIGHTS).is_file():
                raise MumoError(f"{out}: this run finished; nothing to resume (train again with --overwrite)")
            else:
                raise MumoError(f"{out}: nothing to resume (no interrupted run with checkpoints/last.ckpt)")
            return
        if (self.staging / MANIFEST).is_file() and not (self.staging / PARTIAL_MARK).is_file():
            discard(self.staging)  # a run replaced by the last commit, whose removal was cut short
        if self.staging.exists() and not self.overwrite and (self.staging / CHECKPOINT).is_file():
            raise MumoError(
                f"{out}: an interrupted run waits in {self.staging}; continue it with --resume, "
                "or start again with --overwrite"
            )
        if out.is_dir() and any(out.iterdir()):
            if not self.overwrite:
                raise MumoError(
                    f"{out}: already holds files; use --resume to continue it, --overwrite to replace it, "
                    "or another --out"
                )
            replaceable(out)

    # -------------------------------------------------------------------------------------- steps
    def __enter__(self) -> RunWriter:
        self.lock.__enter__()
        try:
            self.check_destination()  # again, now that no other mumo can change it
            if not self.resume:
                if self.staging.exists():  # --overwrite, or a run that died before its first checkpoint
                    discard(self.staging)
                self.staging.mkdir(parents=True)
                (self.staging / PARTIAL_MARK).touch()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            # A run that failed before its first checkpoint has nothing worth resuming.
            if error is not None and self.work == self.staging and not (self.staging / CHECKPOINT).is_file():
                discard(self.staging)
        finally:
            self.lock.release()

    def commit(self) -> Path:
        """Seal the work folder with its manifest and move it into place; returns `out`."""
        (self.work / PARTIAL_MARK).unlink(missing_ok=True)
        write_manifest(self.work)
        if self.work == self.out:
            return self.out
        if self.out.is_dir() and any(self.out.iterdir()):
            replaceable(self.out)
            if exchange(self.staging, self.out):  # atomic: --out is the old run, then the new one
                discard(self.staging, sealed=True)
                return self.out
            old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
            os.replace(self.out, old)
            os.replace(self.staging, self.out)
            discard(old, sealed=True)
            return self.out
        if self.out.is_dir():
            self.out.rmdir()  # empty
        self.out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.staging, self.out)
        return self.out


def staging(out: Path) -> Path:
    """Where the run bound for `out` is trained: `.NAME.partial` beside it."""
    return out.parent / f".{out.name}.partial"


def replaceable(folder: Path) -> None:
    """A folder --overwrite may replace: one mumo wrote (manifest.json), holding nothing else."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise MumoError(
            f"--overwrite {folder}: not a run folder mumo wrote (no {MANIFEST}); mumo replaces only its own "
            "runs: move it away or choose another --out"
        )
    foreign = foreign_entries(folder, manifest)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise MumoError(
            f"--overwrite {folder}: holds files mumo did not write ({shown}); move them out first "
            "or choose another --out"
        )


def discard(folder: Path, sealed: bool = False) -> None:
    """Remove a staging folder mumo made (marked as such), or a replaced run (sealed: every file is in
    its manifest, checked just before)."""
    if not folder.exists():
        return
    if not sealed and not (folder / PARTIAL_MARK).is_file() and not (folder / MANIFEST).is_file():
        raise MumoError(f"{folder}: expected mumo's own staging folder here; move it away and run again")
    shutil.rmtree(folder)


_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system
    cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rename = libc.renameat2
    except (OSError, AttributeError):
        return False
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    here = -100  # AT_FDCWD
    return rename(here, os.fsencode(a), here, os.fsencode(b), _RENAME_EXCHANGE) == 0
