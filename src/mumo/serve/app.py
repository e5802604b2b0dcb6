"""The FastAPI app: a run (and optionally an index) loaded once in the lifespan, served over JSON and
multipart, with micro-batched /predict, limits on every input, JSON errors, Prometheus /metrics, one
log line per request, and the web page at /.

Routes: GET /health /ready /info /metrics /files/{id}/{column} /; POST /predict /embed /search /generate.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from mumo.errors import MumoError
from mumo.serve.batcher import MicroBatcher, Overdue
from mumo.serve.guard import Guard
from mumo.serve.inputs import BadInput, Limits, Uploads, form_row, json_rows, parse_json
from mumo.serve.schemas import EMBED_BODY, GENERATE_BODY, ROWS_BODY, SEARCH_BODY

STATIC = Path(__file__).parent / "static"


@dataclass
class State:
    run_dir: Path
    index_dir: Path | None
    limits: Limits
    token: str | None = None
    model: Any = None
    searcher: Any = None
    batcher: MicroBatcher | None = None
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="mumo-model")
    )
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram("mumo_request_seconds", "Request latency", ["route"], registry=r)
        self.requests = Counter("mumo_requests", "Requests answered", ["route", "status"], registry=r)
        self.errors = Counter("mumo_errors", "Error answers by status", ["status"], registry=r)
        self.batch_rows = Histogram(
            "mumo_batch_rows", "Rows per model call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r
        )
        self.queue_depth = Gauge(
            "mumo_queue_rows", "Rows waiting for the model", registry=r, multiprocess_mode="livesum"
        )

    def observe_batch(self, rows: int, depth: int) -> None:
        self.batch_rows.observe(rows)
        self.queue_depth.set(depth)

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run model work in the model thread (one call at a time), within the request time limit."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self.executor, function, *args), self.limits.request_seconds
            )
        except TimeoutError:
            raise Overdue(
                f"no answer within the request time limit ({self.limits.request_seconds:g} s)"
            ) from None


def create_app(
    run_dir: str | Path,
    index_dir: str | Path | None = None,
    limits: Limits | None = None,
    token: str | None = None,
    batching: bool = True,
) -> FastAPI:
    state = State(Path(run_dir), Path(index_dir) if index_dir else None, limits or Limits(), token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import mumo

        state.model = mumo.load(state.run_dir)
        if state.index_dir is not None:
            from mumo.index import read_manifest
            from mumo.search import Searcher

            same = Path(read_manifest(state.index_dir)["run"]).resolve() == state.run_dir.resolve()
            state.searcher = Searcher.open(state.index_dir, state.model if same else None)
        limits = state.limits
        state.batcher = MicroBatcher(
            lambda groups: _predict_groups(state.model, groups),
            state.executor,
            max_batch=limits.max_batch if batching else 1,
            max_wait_ms=limits.max_wait_ms if batching else 0.0,
            max_queue=limits.max_queue,
            observe=state.observe_batch,
        )
        state.batcher.start()
        yield
        await state.batcher.stop()
        state.executor.shutdown(wait=False)

    app = FastAPI(
        title="mumo",
        summary="A mumo run served: predict, embed, search, generate.",
        lifespan=lifespan,
    )
    app.state.mumo = state
    app.add_middleware(Guard, state=state)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _routes(app, state)
    return app


def _predict_groups(
    model: Any, groups: list[list[dict[str, Any]]]
) -> list[list[dict[str, Any]] | BaseException]:
    """One model call for every request's rows; when it fails on bad input, each request alone, so that
    only the request at fault gets the error."""
    flat = [row for rows in groups for row in rows]
    try:
        results = model.predict(flat)
    except MumoError:
        answers: list[list[dict[str, Any]] | BaseException] = []
        for rows in groups:
            try:
                answers.append(model.predict(rows))
            except MumoError as err:
                answers.append(err)
        return answers
    out: list[list[dict[str, Any]] | BaseException] = []
    start = 0
    for rows in groups:
        out.append(_jsonable(results[start : start + len(rows)]))
        start += len(rows)
    return out


def _jsonable(value: Any) -> Any:
    """Results as JSON: NaN/inf → None, numpy → Python, PIL images → data URIs."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------ routes
def _routes(app: FastAPI, state: State) -> None:
    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="The model (and index) are loaded")
    async def ready() -> JSONResponse:
        if state.model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/info", summary="Task, inputs and their kinds, labels, limits, index")
    async def info() -> dict[str, Any]:
        from mumo import __version__

        model = state.model
        target = model.target
        index = None
        if state.searcher is not None:
            m = state.searcher.index.manifest
            index = {
                "column": m["column"],
                "kind": m["kind"],
                "index": m["index"],
                "vectors": state.searcher.index.count,
                "recall_at_10": m["recall_at_10"],
                "query_kinds": sorted(
                    {
                        k
                        for k in state.searcher.model.schema.inputs.values()
                        if k in ("text", "image", "audio")
                    }
                ),
                "metadata": [c for c in state.searcher.index.rows.columns if c != "id"],
            }
        generates = "images" if getattr(model.task, "generate", None) is not None else None
        return {
            "mumo": __version__,
            "run": state.run_dir.name,
            "task": model.task.name,
            "inputs": dict(model.schema.inputs),
            "targets": list(model.schema.targets),
            "labels": list(getattr(target, "classes", []) or []) or None,
            "generates": generates,
            "embeds": _embeds(model),
            "index": index,
            "limits": state.limits.describe(),
        }

    @app.post(
        "/predict", summary="Predictions for rows (JSON) or one row (multipart)", openapi_extra=ROWS_BODY
    )
    async def predict(request: Request) -> dict[str, Any]:
        uploads = Uploads()
        try:
            rows = await _rows(request, state, uploads)
            assert state.batcher is not None
            return {"predictions": await state.batcher.submit(rows, state.limits.request_seconds)}
        finally:
            uploads.close()

    @app.post("/embed", summary="Embeddings of one column of rows", openapi_extra=EMBED_BODY)
    async def embed(request: Request) -> dict[str, Any]:
        columns = _embeds(state.model)
        if not columns:
            raise BadInput(f"/embed: a {state.model.task.name} run does not embed columns", 404)
        payload = parse_json(await request.body())
        column = payload.get("column") if isinstance(payload, dict) else None
        if column not in columns:
            raise BadInput(f'"column" must be one of {", ".join(columns)}')
        uploads = Uploads()
        try:
            rows = json_rows(payload, state.model.inputs, uploads, state.limits)
            vectors = await state.call(state.model.embed, rows, column)
        finally:
            uploads.close()
        return {"column": column, "vectors": _jsonable(vectors.tolist())}

    @app.post(
        "/search",
        summary="Nearest indexed rows to a text, image, audio or indexed row",
        openapi_extra=SEARCH_BODY,
    )
    async def search(request: Request) -> dict[str, Any]:
        if state.searcher is None:
            raise BadInput("/search: the server has no index (start it with --index INDEX_DIR)", 404)
        uploads = Uploads()
        try:
            query, k, where = await _search_query(request, state, uploads)
            searcher = state.searcher
            if "like" in query:
                hits = await state.call(searcher.like, query["like"], k, where)
            else:
                kind, value = next(iter(query.items()))
                hits = await state.call(searcher.query, kind, value, k, where)
        finally:
            uploads.close()
        return {"hits": [{"id": h.id, "score": h.score, "row": _jsonable(h.row)} for h in hits]}

    @app.post(
        "/generate",
        summary="Generated images (image_generation) or text (generation)",
        openapi_extra=GENERATE_BODY,
    )
    async def generate(request: Request) -> dict[str, Any]:
        model = state.model
        payload = parse_json(await request.body())
        uploads = Uploads()
        try:
            rows = json_rows(payload, model.inputs, uploads, state.limits)
            if getattr(model.task, "generate", None) is None:
                from mumo.data.targets import TextTarget

                if not isinstance(model.target, TextTarget):
                    raise BadInput(
                        f"/generate: a {model.task.name} run does not generate (use /predict)", 404
                    )
                assert state.batcher is not None
                return {"generated": await state.batcher.submit(rows, state.limits.request_seconds)}
            n, seed = payload.get("n", 1), payload.get("seed")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
                raise BadInput('"n" must be a whole number from 1 to 16')
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise BadInput('"seed" must be a whole number')
            images = await state.call(model.generate, rows, n, seed)
        finally:
            uploads.close()
        return {"images": _jsonable(images)}

    @app.get("/files/{row_id}/{column}", summary="A file of an indexed row (thumbnails for the page)")
    async def files(row_id: int, column: str) -> FileResponse:
        if state.searcher is None:
            raise BadInput("/files: the server has no index", 404)
        try:
            row = state.searcher.index.row(row_id)
        except MumoError:
            raise BadInput(f"no indexed row {row_id}", 404) from None
        kind = state.searcher.model.schema.inputs.get(column)
        value = row.get(column)
        if kind not in ("image", "audio") or not value or not Path(str(value)).is_file():
            raise BadInput(f"row {row_id} has no {column!r} file", 404)
        return FileResponse(str(value))

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(_registry(state)), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def _registry(state: State) -> CollectorRegistry:
    """This process's metrics; with several workers (mumo serve --workers), every worker's, added up
    from the files prometheus_client keeps in PROMETHEUS_MULTIPROC_DIR."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return state.registry
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _embeds(model: Any) -> list[str]:
    from mumo.embedding import Embedder

    return list(model.processors) if isinstance(model.task, Embedder) else []


async def _rows(request: Request, state: State, uploads: Uploads) -> list[dict[str, Any]]:
    if _is_multipart(request):
        row, _ = await form_row(request, state.model.inputs, uploads, state.limits)
        if not row:
            raise BadInput(f"the form names no input column; inputs: {', '.join(state.model.inputs)}")
        return [row]
    return json_rows(parse_json(await request.body()), state.model.inputs, uploads, state.limits)


async def _search_query(
    request: Request, state: State, uploads: Uploads
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(the query: one of text / image / audio / like, k, where) from JSON or multipart."""
    kinds = {"text": "text", "image": "image", "audio": "audio"}
    if _is_multipart(request):
        inputs = {"text": "text", "image": "image", "audio": "audio"}
        row, options = await form_row(request, inputs, uploads, state.limits, extra=("like", "k", "where"))
        payload: dict[str, Any] = {**{k: v for k, v in row.items() if v is not None}}
        for key in ("like", "k"):
            if key in options:
                try:
                    payload[key] = int(options[key])
                except ValueError:
                    raise BadInput(f'"{key}" must be a whole number') from None
        if "where" in options:
            payload["where"] = parse_json(options["where"].encode())
    else:
        payload = parse_json(await request.body())
        if not isinstance(payload, dict):
            raise BadInput('the body must be a JSON object, e.g. {"text": "a red circle", "k": 10}')
        for kind in ("image", "audio"):
            if isinstance(payload.get(kind), str) and payload[kind]:
                from mumo.serve.inputs import from_data_uri

                payload[kind] = from_data_uri(payload[kind], kind, kind, uploads, state.limits)
    given = [key for key in (*kinds, "like") if payload.get(key) not in (None, "")]
    if len(given) != 1:
        raise BadInput('give exactly one of "text", "image", "audio" or "like"')
    k = payload.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise BadInput('"k" must be a whole number from 1 to 1000')
    where = payload.get("where") or {}
    if not isinstance(where, dict) or not all(isinstance(v, str | int | float) for v in where.values()):
        raise BadInput('"where" must be an object of column: value')
    key = given[0]
    value = payload[key]
    if key == "like" and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadInput('"like" must be a row id (a whole number)')
    if key == "text" and not isinstance(value, str):
        raise BadInput('"text" must be a string')
    return {key: value}, k, {str(c): str(v) for c, v in where.items()}


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


__all__ = ["create_app"]
