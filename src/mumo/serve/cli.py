"""`mumo serve RUN [--index INDEX_DIR] [--host 127.0.0.1] [--port 8000] [--token T | --insecure]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
) -> None:
    if host not in LOCAL and not token and not insecure:
        raise MumoError(
            f"--host {host}: other machines could reach the server; give --token T (clients send "
            "Authorization: Bearer T) or --insecure (when a proxy in front of it checks who calls)"
        )
    from mumo.rundir import check_loadable

    check_loadable(Path(run_dir))
    if index_dir is not None:
        from mumo.index import read_manifest

        read_manifest(Path(index_dir))
    import uvicorn

    from mumo.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = create_app(run_dir, index_dir, limits, token, batching)
    print(f"mumo: serving {run_dir} on http://{host}:{port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
