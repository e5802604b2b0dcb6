"""`mumo serve RUN [--index INDEX_DIR] [--host 127.0.0.1] [--port 8000] [--token T | --insecure]
[--workers N]`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mumo.errors import MumoError
from mumo.serve.inputs import Limits

LOCAL = ("127.0.0.1", "localhost", "::1")


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run")
    p.add_argument("--index", help="an index folder (mumo index) to serve /search from")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, each with the model loaded and its own batching",
    )
    p.add_argument(
        "--token", help="require Authorization: Bearer TOKEN on the API (needed to bind other addresses)"
    )
    p.add_argument(
        "--insecure", action="store_true", help="bind another address without a token (behind your own proxy)"
    )
    p.add_argument(
        "--max-batch", type=int, default=Limits.max_batch, help="rows per model call (micro-batching)"
    )
    p.add_argument(
        "--max-wait-ms", type=float, default=Limits.max_wait_ms, help="wait for more rows after the first"
    )
    p.add_argument("--no-batching", action="store_true", help="one request per model call")
    p.add_argument(
        "--max-body-mb", type=float, default=Limits.max_body_bytes / 2**20, help="request body limit"
    )
    p.add_argument("--max-image-pixels", type=int, default=Limits.max_image_pixels)
    p.add_argument("--max-audio-seconds", type=float, default=Limits.max_audio_seconds)
    p.add_argument("--max-queue", type=int, default=Limits.max_queue, help="rows waiting before 503")
    p.add_argument(
        "--request-seconds", type=float, default=Limits.request_seconds, help="time limit per request (504)"
    )


def run(args: argparse.Namespace) -> int:
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_audio_seconds=args.max_audio_seconds,
        request_seconds=args.request_seconds,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
    )
    serve(
        args.run_dir,
        args.index,
        args.host,
        args.port,
        args.token,
        args.insecure,
        limits,
        not args.no_batching,
        args.workers,
    )
    return 0


def serve(
    run_dir: str | Path,
    index_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    insecure: bool = False,
    limits: Limits | None = None,
    batching: bool = True,
    workers: int = 1,
) -> None:
    if host not in LOCAL and not token and not insecure:
        raise MumoError(
            f"--host {host}: other machines could reach the server; give --token T (clients send "
            "Authorization: Bearer T) or --insecure (when a proxy in front of it checks who calls)"
        )
    if workers < 1:
        raise MumoError(f"--workers: {workers} must be at least 1")
    from mumo.rundir import check_loadable

    check_loadable(Path(run_dir))
    if index_dir is not None:
        from mumo.index import read_manifest

        read_manifest(Path(index_dir))
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    settings = {
        "run_dir": str(Path(run_dir).resolve()),
        "index_dir": str(Path(index_dir).resolve()) if index_dir else None,
        "limits": (limits or Limits()).describe(),
        "token": token,
        "batching": batching,
    }
    shown = f"{workers} workers, " if workers > 1 else ""
    print(f"mumo: serving {run_dir} on http://{host}:{port}/ ({shown}API docs at /docs)", file=sys.stderr)
    if workers == 1:
        uvicorn.run(app_from(settings), host=host, port=port, access_log=False, log_level="warning")
        return
    # Several processes: uvicorn starts each from the factory below, which reads the settings from the
    # environment; Prometheus counts go to files in a shared folder that /metrics adds up.
    metrics_dir = tempfile.mkdtemp(prefix="mumo-metrics-")
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "mumo.serve.cli:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            access_log=False,
            log_level="warning",
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


SETTINGS_ENV = "MUMO_SERVE_SETTINGS"


def app_from(settings: dict[str, Any]) -> Any:
    from mumo.serve.app import create_app

    limits = Limits(**settings["limits"])
    return create_app(
        settings["run_dir"], settings["index_dir"], limits, settings["token"], settings["batching"]
    )


def app_from_environment() -> Any:
    """The app of one worker of `mumo serve --workers N` (uvicorn calls this in each process)."""
    return app_from(json.loads(os.environ[SETTINGS_ENV]))
