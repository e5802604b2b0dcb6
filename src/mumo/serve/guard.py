"""The outermost middleware of the app: bearer token, body size (Content-Length, then while it streams),
a body that trickles in past the time limit, errors as JSON, metrics and one log line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mumo.errors import MumoError
from mumo.serve.batcher import Overdue, QueueFull
from mumo.serve.inputs import BadInput, BodyTooLarge

if TYPE_CHECKING:
    from mumo.serve.app import State

LOG = logging.getLogger("mumo.serve")
OPEN_PATHS = ("/", "/health", "/ready", "/docs", "/openapi.json")  # and /static/: no token needed


class Guard:
    """Pure ASGI middleware, outermost of the app's own: bearer token, body size (Content-Length, then
    while streaming), errors as JSON, metrics and one log line per request."""

    def __init__(self, app: Any, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        route = path if path in ROUTES else "/static" if path.startswith("/static/") else "other"
        status = {"code": 500}
        sent = {"started": False}

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                sent["started"] = True
            await send(message)

        limits = self.state.limits
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            if self.state.token and path not in OPEN_PATHS and not path.startswith("/static/"):
                given = headers.get("authorization", "")
                if not secrets.compare_digest(given.encode(), f"Bearer {self.state.token}".encode()):
                    await error(sending, 401, "a bearer token is required: Authorization: Bearer <token>")
                    return
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    await error(sending, 400, "Content-Length is not a number")
                    return
                if int(length) > limits.max_body_bytes:
                    await error(
                        sending,
                        413,
                        f"the body is {int(length):,} bytes, more than the limit of {limits.max_body_bytes:,}",
                    )
                    return
            received = {"bytes": 0, "done": False}
            deadline = started + limits.request_seconds

            async def receiving() -> Any:
                if received["done"]:  # the body is in: later calls wait for a disconnect
                    return await receive()
                try:  # a body trickling in (a slow or stalled upload) is cut at the request time limit
                    message = await asyncio.wait_for(receive(), max(deadline - time.perf_counter(), 0.001))
                except TimeoutError:
                    raise BadInput(
                        f"the body did not arrive within the request time limit ({limits.request_seconds:g} s)",
                        408,
                    ) from None
                if message["type"] == "http.request":
                    received["done"] = not message.get("more_body", False)
                    received["bytes"] += len(message.get("body", b""))
                    if received["bytes"] > limits.max_body_bytes:
                        raise BodyTooLarge(
                            f"the body is more than the limit of {limits.max_body_bytes:,} bytes", 413
                        )
                return message

            await self.app(scope, receiving, sending)
        except BadInput as err:
            if not sent["started"]:
                await error(sending, err.status, str(err))
        except QueueFull as err:
            await error(sending, 503, str(err))
        except Overdue as err:
            if not sent["started"]:
                await error(sending, 504, str(err))
        except MumoError as err:
            if not sent["started"]:
                await error(sending, 422, str(err))
        except Exception as err:  # a bug: still JSON, logged with its traceback
            LOG.exception("unhandled error on %s", path)
            if not sent["started"]:
                await error(sending, 500, f"internal error ({type(err).__name__}); see the server log")
        finally:
            seconds = time.perf_counter() - started
            code = status["code"]
            self.state.latency.labels(route).observe(seconds)
            self.state.requests.labels(route, str(code)).inc()
            if code >= 400:
                self.state.errors.labels(str(code)).inc()
            LOG.info(
                json.dumps(
                    {
                        "method": scope.get("method"),
                        "path": path,
                        "status": code,
                        "ms": round(seconds * 1000, 2),
                        "bytes_in": int(headers.get("content-length") or 0),
                        "client": (scope.get("client") or ["?"])[0],
                    }
                )
            )


ROUTES = (
    "/",
    "/health",
    "/ready",
    "/info",
    "/predict",
    "/embed",
    "/search",
    "/generate",
    "/metrics",
    "/docs",
    "/openapi.json",
)


async def error(send: Callable[[Any], Awaitable[None]], status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["Guard", "error"]
