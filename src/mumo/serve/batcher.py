"""Dynamic micro-batching: concurrent requests wait in one queue; a worker takes what is there (up to
max_batch rows, waiting at most max_wait_ms for more after the first) and runs it as one call in the
model thread. A full queue refuses at once (503); a request still waiting at its deadline gets 504.

The model runs in one thread (torch uses the cores inside each call); the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds max_queue rows already (503)."""


class Overdue(Exception):
    """The request waited past its deadline (504)."""


@dataclass
class _Job:
    rows: list[dict[str, Any]]
    deadline: float
    future: asyncio.Future[list[dict[str, Any]]]
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """`await batcher.submit(rows, timeout)` → the results of `run(rows)` for those rows, computed
    together with other requests' rows. `run` gets a list of row lists (one per request) and returns
    one result list per request (an exception instance for a request that failed alone)."""

    def __init__(
        self,
        run: Callable[[list[list[dict[str, Any]]]], list[list[dict[str, Any]] | BaseException]],
        executor: ThreadPoolExecutor,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        observe: Callable[[int, int], None] | None = None,
    ) -> None:
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.observe = observe or (lambda rows, depth: None)
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.waiting_rows = 0
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    @property
    def depth(self) -> int:
        return self.waiting_rows

    async def submit(self, rows: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        if self.waiting_rows + len(rows) > self.max_queue:
            raise QueueFull(f"the server is busy ({self.waiting_rows} rows queued); retry shortly")
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        job = _Job(rows, time.perf_counter() + timeout, future)
        self.waiting_rows += len(rows)
        self.queue.put_nowait(job)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Overdue(f"no answer within the request time limit ({timeout:g} s)") from None

    async def _loop(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].rows)
            closes = time.perf_counter() + self.max_wait
            while size < self.max_batch:
                left = closes - time.perf_counter()
                try:
                    job = (
                        self.queue.get_nowait()
                        if left <= 0
                        else await asyncio.wait_for(self.queue.get(), left)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                jobs.append(job)
                size += len(job.rows)
            self.waiting_rows -= size
            now = time.perf_counter()
            live = [j for j in jobs if j.deadline > now and not j.future.done()]
            for job in jobs:
                if job not in live and not job.future.done():
                    job.future.set_exception(Overdue("the request waited past its time limit"))
            if not live:
                continue
            self.observe(sum(len(j.rows) for j in live), self.waiting_rows)
            loop = asyncio.get_running_loop()
            try:
                answers = await loop.run_in_executor(self.executor, self.run, [j.rows for j in live])
            except Exception as err:  # the batch failed as a whole: every request gets the error
                answers = [err] * len(live)
            for job, answer in zip(live, answers, strict=True):
                if job.future.done():
                    continue
                if isinstance(answer, BaseException):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)


__all__ = ["MicroBatcher", "Overdue", "QueueFull"]
