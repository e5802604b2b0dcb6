"""mumo serve: a real server (uvicorn in a child process on a free 127.0.0.1 port) serving a classifier
and a contrastive run's index; every endpoint against the library, limits, bad uploads, batching, fuzzing, the page."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import mumo
from conftest import run_cli, train_contrastive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def uploaded_rows(table: Any, shapes_dir: Path) -> list[dict[str, Any]]:
    """Rows of a shapes manifest as a client sends them: files as data URIs."""
    return [
        {
            "image": data_uri(shapes_dir / r.image, "image/png"),
            "sound": data_uri(shapes_dir / r.sound, "audio/wav"),
            "caption": r.caption,
            "weight": float(r.weight),
        }
        for r in table.itertuples()
    ]


class Server:
    """`mumo serve` in a child process; `url` once /ready answers."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # the log goes to a file: a pipe nobody reads fills up (one line per request) and stalls the server
        self.log = tempfile.NamedTemporaryFile(prefix="mumo-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mumo", "serve", *args, "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(Path(self.log.name).read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("the server did not get ready in 90 s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        text = Path(self.log.name).read_text()
        Path(self.log.name).unlink()
        return text


@pytest.fixture(scope="module")
def classifier(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 32},
        "train": {"epochs": 3, "batch_size": 32, "progress": False},
    }
    return Path(mumo.train(config, out=tmp_path_factory.mktemp("serve") / "classifier", quiet=True).path)


@pytest.fixture(scope="module")
def contrastive(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_contrastive(shapes_dir, tmp_path_factory.mktemp("serve") / "contrastive")


@pytest.fixture(scope="module")
def index_dir(contrastive: Path, shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mumo.data.table import read_table
    from mumo.indexing import build

    out = tmp_path_factory.mktemp("serve") / "index"
    build(mumo.load(contrastive), read_table(shapes_dir / "train.csv"), "image", out)
    return out


@pytest.fixture(scope="module")
def server(classifier: Path, index_dir: Path) -> Iterator[Server]:
    """The classifier with the contrastive run's index; small limits so the tests can reach them."""
    running = Server(
        str(classifier),
        "--index",
        str(index_dir),
        "--max-body-mb",
        "5",
        "--request-seconds",
        "4",
        "--max-image-pixels",
        "4000000",
    )
    yield running
    running.stop()


# ------------------------------------------------------------------------------ answers = library
def test_every_endpoint_answers_what_the_library_does(
    server: Server, classifier: Path, contrastive: Path, index_dir: Path, shapes_dir: Path
) -> None:
    import pandas as pd

    from mumo.search import Searcher

    url = server.url
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/ready").json() == {"status": "ready"}
    model = mumo.load(classifier)
    info = httpx.get(f"{url}/info").json()
    assert info["task"] == "classification" and info["inputs"] == model.schema.inputs
    assert info["labels"] == model.target.classes
    assert info["limits"]["max_body_bytes"] == 5 * 2**20 and info["limits"]["max_image_pixels"] == 4_000_000
    assert info["index"]["vectors"] == 160 and info["index"]["column"] == "image"

    test = pd.read_csv(shapes_dir / "test.csv").head(3)
    rows = uploaded_rows(test, shapes_dir)
    expected = model.predict(test.drop(columns=["label"]), base_dir=shapes_dir)
    got = httpx.post(f"{url}/predict", json={"rows": rows}).json()["predictions"]
    assert [g["prediction"] for g in got] == [e["prediction"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)

    first = test.iloc[0]
    with open(shapes_dir / first.image, "rb") as image:
        one = httpx.post(
            f"{url}/predict", files={"image": ("a.png", image, "image/png")}, data={"caption": first.caption}
        ).json()["predictions"][0]
    alone = model.predict([{"image": str(shapes_dir / first.image), "caption": first.caption}])[0]
    assert one["prediction"] == alone["prediction"]
    assert one["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)

    searcher = Searcher.open(index_dir)
    for body, hits in (
        ({"text": "a large red circle", "k": 5}, searcher.query("text", "a large red circle", 5)),
        ({"like": 7, "k": 4}, searcher.like(7, 4)),
        (
            {"like": 7, "k": 50, "where": {"label": "circle-low"}},
            searcher.like(7, 50, {"label": "circle-low"}),
        ),
    ):
        answer = httpx.post(f"{url}/search", json=body).json()["hits"]
        assert [h["id"] for h in answer] == [h.id for h in hits]
        assert [h["score"] for h in answer] == pytest.approx([h.score for h in hits], abs=1e-5)
    with open(shapes_dir / first.image, "rb") as image:
        answer = httpx.post(
            f"{url}/search", files={"image": ("q.png", image, "image/png")}, data={"k": "3"}
        ).json()
    assert [h["id"] for h in answer["hits"]] == [
        h.id for h in searcher.query("image", str(shapes_dir / first.image), 3)
    ]
    served = httpx.get(f"{url}/files/{answer['hits'][0]['id']}/image")
    assert (
        served.status_code == 200 and served.content == Path(answer["hits"][0]["row"]["image"]).read_bytes()
    )

    for path, body in (
        ("/embed", {"rows": [{"caption": "x"}], "column": "caption"}),
        ("/generate", {"rows": [{"caption": "x"}]}),
    ):
        refused = httpx.post(f"{url}{path}", json=body)
        assert refused.status_code == 404 and "classification run does not" in refused.json()["error"]
    metrics = httpx.get(f"{url}/metrics").text
    assert 'mumo_request_seconds_bucket{le="0.005",route="/predict"}' in metrics
    assert "mumo_batch_rows_count" in metrics and 'mumo_errors_total{status="404"}' in metrics


def test_embed_and_generate_in_process(contrastive: Path) -> None:
    """The app without a server (TestClient runs the lifespan): /embed equals model.embed."""
    from fastapi.testclient import TestClient

    from mumo.serve import create_app

    with TestClient(create_app(contrastive)) as client:
        vectors = client.post(
            "/embed",
            json={"rows": [{"caption": "a red circle"}, {"caption": "a blue cross"}], "column": "caption"},
        ).json()
        expected = mumo.load(contrastive).embed(["a red circle", "a blue cross"], "caption")
        assert np.allclose(np.array(vectors["vectors"]), expected, atol=1e-5)
        assert client.post("/embed", json={"rows": [{"caption": "x"}], "column": "label"}).status_code == 422
        assert client.post("/search", json={"text": "x"}).status_code == 404  # no index


# ------------------------------------------------------------------------------ bad input
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (and whose pixels are garbage): nothing may decode it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_stays_up(
    server: Server, shapes_dir: Path, tmp_path: Path
) -> None:
    url = server.url
    png = (shapes_dir / "images" / "00000.png").read_bytes()
    cases = {
        "truncated png": ({"image": ("t.png", png[: len(png) // 2], "image/png")}, None, 422, "image"),
        "20000x20000 png": (
            {"image": ("big.png", _png_header(20000, 20000), "image/png")},
            None,
            413,
            "20000x20000 pixels",
        ),
        "text named .wav": (
            {"sound": ("fake.wav", b"this is not audio" * 100, "audio/wav")},
            None,
            422,
            "not an audio file",
        ),
        "unknown column": (None, {"rows": [{"colour": "red"}]}, 422, "'colour' is not an input"),
        "a server path": (None, {"rows": [{"image": "/etc/passwd"}]}, 422, "does not read paths"),
        "not json": (None, b"{rows: nope", 400, "not valid JSON"),
        "no rows": (None, {"rows": []}, 422, "is empty"),
    }
    for name, (files, body, status, message) in cases.items():
        if files is not None:
            answer = httpx.post(f"{url}/predict", files=files)
        elif isinstance(body, bytes):
            answer = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"})
        else:
            answer = httpx.post(f"{url}/predict", json=body)
        assert answer.status_code == status, (name, answer.text)
        assert message in answer.json()["error"], (name, answer.text)

    big = httpx.post(
        f"{url}/predict", content=b"x" * (50 * 2**20), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "more than the limit" in big.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body streams
        for _ in range(12):
            yield b"x" * 2**20

    streamed = httpx.post(f"{url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413

    import asyncio

    async def slow_upload(client: httpx.AsyncClient) -> httpx.Response:
        async def trickle() -> Any:
            yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            for _ in range(40):  # 1 KB every half second: 20 s for the whole upload
                yield b"x" * 1024
                await asyncio.sleep(0.5)

        return await client.post(
            f"{url}/predict", content=trickle(), headers={"content-type": "multipart/form-data; boundary=b"}
        )

    async def hundred() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(slow_upload(client) for _ in range(100)))

    started = time.time()
    answers = asyncio.run(hundred())
    assert [a.status_code for a in answers] == [408] * 100
    assert all("time limit" in a.json()["error"] for a in answers)
    assert time.time() - started < 30  # cut at the 4 s request limit, not after the 20 s upload
    assert httpx.get(f"{url}/health").status_code == 200
    rss = server.rss_mb()
    assert rss < 1500, f"resident memory {rss:.0f} MB after the bad uploads (bound: 1500 MB)"


# ------------------------------------------------------------------------------ batching, queue, token
def test_concurrent_requests_are_batched(server: Server, shapes_dir: Path) -> None:
    import re
    from concurrent.futures import ThreadPoolExecutor

    def totals() -> tuple[float, float]:
        text = httpx.get(f"{server.url}/metrics").text
        count = float(re.search(r"^mumo_batch_rows_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
        rows = float(re.search(r"^mumo_batch_rows_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
        return count, rows

    before = totals()
    body = {"rows": [{"caption": "a small red circle", "weight": 1.0}]}
    with ThreadPoolExecutor(32) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(f"{server.url}/predict", json=body, timeout=60), range(96))
        )
    assert [a.status_code for a in answers] == [200] * 96
    first = answers[0].json()["predictions"][0]
    for answer in answers:  # batched or not, the same answer (to float error)
        got = answer.json()["predictions"][0]
        assert got["prediction"] == first["prediction"]
        assert got["probabilities"] == pytest.approx(first["probabilities"], abs=1e-5)
    after = totals()
    calls, rows = after[0] - before[0], after[1] - before[1]
    assert rows == 96 and calls < 96, f"{calls} model calls for 96 concurrent rows: nothing was batched"


def test_queue_full_and_overdue_requests() -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mumo.serve.batcher import MicroBatcher, Overdue, QueueFull

    def slow(groups: list[list[dict[str, Any]]]) -> list[Any]:
        time.sleep(0.3)
        return [[{"n": len(rows)}] for rows in groups]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(slow, ThreadPoolExecutor(1), max_batch=2, max_wait_ms=1, max_queue=4)
        batcher.start()
        jobs = [asyncio.create_task(batcher.submit([{}], timeout=0.5)) for _ in range(4)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):  # two rows running, two waiting: three more would pass max_queue
            await batcher.submit([{}, {}, {}], timeout=5)
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results[:2] == [[{"n": 1}], [{"n": 1}]]  # the first two ran together within 0.5 s
    assert all(isinstance(r, Overdue) for r in results[2:])  # the next batch ends after 0.6 s


def test_a_token_guards_the_api_and_other_addresses_need_one(classifier: Path) -> None:
    from fastapi.testclient import TestClient

    from mumo.serve import create_app

    with TestClient(create_app(classifier, token="s3cret")) as client:
        assert client.get("/health").status_code == 200
        refused = client.get("/info")
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
        assert client.get("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    done = run_cli("serve", str(classifier), "--host", "0.0.0.0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mumo: error: --host 0.0.0.0: other machines could reach the server; give --token T (clients send "
        "Authorization: Bearer T) or --insecure (when a proxy in front of it checks who calls)"
    ]


# ------------------------------------------------------------------------------ fuzzing
def test_fuzzing_the_api_gives_no_server_error(server: Server, tmp_path: Path) -> None:
    """schemathesis generates requests from /openapi.json (at least 500 in all): none may get a 5xx."""
    report = tmp_path / "junit.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "120",
            "--workers",
            "4",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache folder goes there
    )
    assert done.returncode == 0, done.stdout[-4000:]
    requests = re.findall(r"(\d+) (?:test cases|generated)", done.stdout)
    assert sum(int(n) for n in requests) >= 500, done.stdout[-2000:]


# ------------------------------------------------------------------------------ the page
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_the_page_searches_shows_more_like_this_and_predicts(
    server: Server, classifier: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"{server.url}/")
        page.fill("#query", "a large red circle")
        page.click("#search-form button[type=submit]")
        page.wait_for_function("document.querySelectorAll('.result img').length === 12")
        page.wait_for_function(
            "[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth === 32)"
        )
        first = [
            int(x) for x in page.locator(".result").evaluate_all("cards => cards.map(c => c.dataset.id)")
        ]
        page.screenshot(path=str(tmp_path / "search.png"))

        page.locator(".result .more").first.click()
        page.wait_for_function(
            f"document.querySelector('#search-status').textContent.includes('results like #{first[0]}')"
        )
        like = [int(x) for x in page.locator(".result").evaluate_all("cards => cards.map(c => c.dataset.id)")]
        assert len(like) == 12 and first[0] not in like
        page.screenshot(path=str(tmp_path / "more-like-this.png"))

        page.set_input_files("#predict-form input[name=image]", str(shapes_dir / "images" / "00000.png"))
        page.click("#predict-form button[type=submit]")
        page.wait_for_selector(".bar")
        labels = page.locator(".bar").evaluate_all("bars => bars.map(b => b.dataset.label)")
        values = [float(v) for v in page.locator(".bar .value").all_inner_texts()]
        page.screenshot(path=str(tmp_path / "predict.png"))
        browser.close()
    expected = mumo.load(classifier).predict([{"image": str(shapes_dir / "images" / "00000.png")}])[0][
        "probabilities"
    ]
    assert sorted(labels) == sorted(expected)
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0, abs=0.01)
    assert values[0] == pytest.approx(max(expected.values()), abs=0.001)
    assert all(
        (tmp_path / name).stat().st_size > 5000
        for name in ("search.png", "more-like-this.png", "predict.png")
    )


# ------------------------------------------------------------------------------------- --workers
def test_several_workers_each_load_the_model_and_share_their_metrics(
    classifier: Path, shapes_dir: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd
    import psutil

    test = pd.read_csv(shapes_dir / "test.csv")
    rows = uploaded_rows(test, shapes_dir)
    expected = [
        p["prediction"]
        for p in mumo.load(classifier).predict(test.drop(columns=["label"]), base_dir=shapes_dir)
    ]
    running = Server(str(classifier), "--workers", "2")
    try:
        workers = psutil.Process(running.process.pid).children(recursive=True)
        # two server processes, each holding a loaded model (torch's and the weights' pages)
        assert len([w for w in workers if w.memory_info().rss > 150 * 2**20]) == 2

        def ask(row: dict[str, Any]) -> str:
            answer = httpx.post(f"{running.url}/predict", json={"rows": [row]}, timeout=60)
            answer.raise_for_status()
            return str(answer.json()["predictions"][0]["prediction"])

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(ask, rows))
        assert got == expected
        text = httpx.get(f"{running.url}/metrics").text
        answered = sum(
            float(v)
            for v in re.findall(r'^mumo_requests_total\{route="/predict",status="200"\} (\S+)$', text, re.M)
        )
        assert answered == len(rows)  # both workers' counts, added up
    finally:
        log = running.stop()
    assert "2 workers" in log
