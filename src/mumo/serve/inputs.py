"""Request bodies → rows for the predictor: JSON ({"rows": [...]}, file columns as data: URIs) or
multipart (one field per column, files as uploads). Uploaded files go to a temp folder per request and
are checked against the limits before anything decodes them: image pixels from the header, audio
seconds from the header. The server never reads a path a client names and never fetches a URL."""

from __future__ import annotations

import base64
import binascii
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mumo.errors import MumoError

FILE_KINDS = ("image", "audio")


class BadInput(MumoError):
    """A request the server refuses: `status` (413 too large, 422 unprocessable, 400 malformed)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLarge(BadInput):
    """The body grew past max_body_bytes while it streamed in (413)."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 20 * 1024 * 1024
    max_rows: int = 256
    max_image_pixels: int = 25_000_000
    max_audio_seconds: float = 60.0
    request_seconds: float = 30.0
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class Uploads:
    """The temp folder of one request's files; removed when the request is answered."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mumo-serve-"))
        self.count = 0

    def path(self, suffix: str) -> Path:
        self.count += 1
        return self.folder / f"{self.count}{suffix}"

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def check_file(path: Path, kind: str, column: str, limits: Limits) -> None:
    """Refuse a file over the limits or not of its kind, from its header (nothing decoded yet)."""
    if kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise BadInput(f"{column}: not an image mumo can read (PNG, JPEG, WebP, BMP, GIF)") from None
        if width * height > limits.max_image_pixels:
            raise BadInput(
                f"{column}: the image is {width}x{height} pixels, more than the limit of "
                f"{limits.max_image_pixels:,}",
                413,
            )
    elif kind == "audio":
        import soundfile

        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError, ValueError, TypeError):
            raise BadInput(f"{column}: not an audio file mumo can read (WAV, FLAC, OGG)") from None
        if info.samplerate <= 0 or info.frames <= 0:
            raise BadInput(f"{column}: the audio file holds no samples")
        seconds = info.frames / info.samplerate
        if seconds > limits.max_audio_seconds:
            raise BadInput(
                f"{column}: the audio lasts {seconds:.1f} s, more than the limit of {limits.max_audio_seconds:g} s",
                413,
            )


def from_data_uri(value: str, column: str, kind: str, uploads: Uploads, limits: Limits) -> str:
    """A data: URI (or bare base64) of a file column → a checked temp file's path."""
    header, sep, payload = value.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise BadInput(
            f"{column}: a file column takes a data: URI (data:image/png;base64,...) in JSON, or an upload "
            "(multipart); the server does not read paths or URLs"
        )
    if len(payload) * 3 // 4 > limits.max_body_bytes:
        raise BadInput(f"{column}: the file is larger than the limit of {limits.max_body_bytes:,} bytes", 413)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{column}: the data: URI is not valid base64") from None
    path = uploads.path(_suffix(header[5:].split(";")[0], kind))
    path.write_bytes(data)
    check_file(path, kind, column, limits)
    return str(path)


def _suffix(mime: str, kind: str) -> str:
    known = {
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/webp": ".webp",
        "image/gif": ".gif",
        "image/bmp": ".bmp",
        "audio/wav": ".wav",
        "audio/x-wav": ".wav",
        "audio/wave": ".wav",
        "audio/flac": ".flac",
        "audio/ogg": ".ogg",
    }
    return known.get(mime.lower(), ".png" if kind == "image" else ".wav")


def json_rows(
    payload: Any, inputs: dict[str, str], uploads: Uploads, limits: Limits, key: str = "rows"
) -> list[dict[str, Any]]:
    """{"rows": [{column: value}, ...]} → rows with file columns as checked temp files."""
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise BadInput(
            f'the body must be a JSON object with "{key}": a list of rows, e.g. {{"{key}": [{{...}}]}}'
        )
    rows = payload[key]
    if not rows:
        raise BadInput(f'"{key}" is empty: send at least one row')
    if len(rows) > limits.max_rows:
        raise BadInput(f'"{key}" holds {len(rows)} rows, more than the limit of {limits.max_rows}', 413)
    out = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise BadInput(f"row {number}: a row is a JSON object of column: value")
        out.append(_row(row, number, inputs, uploads, limits))
    return out


def _row(
    row: dict[str, Any], number: int, inputs: dict[str, str], uploads: Uploads, limits: Limits
) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for column, value in row.items():
        if column not in inputs:
            raise BadInput(f"row {number}: {column!r} is not an input; inputs: {', '.join(inputs)}")
        kind = inputs[column]
        if value is None or value == "":
            cells[column] = None  # an absent modality
        elif kind in FILE_KINDS:
            if not isinstance(value, str):
                raise BadInput(f"row {number}, {column}: expected a data: URI string")
            cells[column] = from_data_uri(value, column, kind, uploads, limits)
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadInput(f"row {number}, {column}: expected text or a number, not {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadInput(f"row {number}, {column}: {value} is not a finite number")
        else:
            cells[column] = value
    return cells


async def form_row(
    request: Any, inputs: dict[str, str], uploads: Uploads, limits: Limits, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """A multipart form → (one row: a field per input column, files saved and checked; the other
    fields named in `extra`, as text)."""
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=16, max_fields=64)
    except MumoError:
        raise
    except Exception as err:  # python-multipart's parse errors
        raise BadInput(f"the multipart body cannot be read: {err}", 400) from None
    row: dict[str, Any] = {}
    options: dict[str, str] = {}
    try:
        for column, value in form.multi_items():
            if column in extra:
                if isinstance(value, UploadFile):
                    raise BadInput(f"{column}: expected a text field, not a file")
                options[column] = str(value)
                continue
            if column not in inputs:
                raise BadInput(f"{column!r} is not an input; inputs: {', '.join(inputs)}")
            kind = inputs[column]
            if isinstance(value, UploadFile):
                if kind not in FILE_KINDS:
                    raise BadInput(f"{column}: a {kind} column takes a text field, not a file")
                path = uploads.path(Path(value.filename or "").suffix.lower()[:8] or _suffix("", kind))
                with open(path, "wb") as handle:
                    await _copy(value, handle)
                if path.stat().st_size == 0:
                    row[column] = None
                    continue
                check_file(path, kind, column, limits)
                row[column] = str(path)
            else:
                if kind in FILE_KINDS:
                    row[column] = from_data_uri(value, column, kind, uploads, limits) if value else None
                else:
                    row[column] = value if value != "" else None
    finally:
        await form.close()
    return row, options


async def _copy(upload: Any, handle: Any) -> None:
    while chunk := await upload.read(1 << 20):
        handle.write(chunk)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadInput(f"the body is not valid JSON ({err})", 400) from None


__all__ = [
    "BadInput",
    "BodyTooLarge",
    "Limits",
    "Uploads",
    "check_file",
    "form_row",
    "json_rows",
    "parse_json",
]
