"""upright serve: the HTTP API over the Python API, and its self-contained page (issue 19)."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from upright.data.samples import load_samples
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.shipped import shipped_model

fastapi = pytest.importorskip("fastapi")
pytestmark = pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed")


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from upright.serve.app import create_app

    with TestClient(create_app("mnist", max_bytes=200_000, concurrency=2)) as c:
        yield c


def _digit(angle: float, index: int = 0) -> np.ndarray:
    samples = load_samples("mnist")
    pick = np.flatnonzero(np.isin(samples.groups, [2, 3, 4, 5, 7, 9]))[index]
    return rotate_image(samples.images[pick], angle, centre=PROTOCOL_CENTRE)


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs((a - b + 180) % 360 - 180) <= tolerance


def test_health_and_models(client):
    assert client.get("/healthz").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["default"] == "mnist" and {"mnist", "faces"} <= {m["name"] for m in models["models"]}
    assert client.get("/docs").status_code == 200 and "openapi" in client.get("/openapi.json").text


def test_angle_gives_the_angle_confidence_distribution_and_size(client):
    response = client.post("/v1/angle", files={"file": ("seven.png", _png(_digit(50.0)), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert _close(body["angle"], 50.0, 12) and 0 < body["confidence"] <= 1
    assert len(body["distribution"]) == 72 and abs(sum(body["distribution"]) - 1) < 1e-3
    assert (body["width"], body["height"], body["model"], body["file"]) == (28, 28, "mnist", "seven.png")


def test_upright_returns_the_corrected_image_in_its_own_format(client):
    pixels = _digit(-70.0)
    for fmt, media in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        response = client.post("/v1/upright?canvas=expand&fill=white",
                               files={"file": (f"d.{fmt.lower()}", _png(pixels, fmt), media)})
        assert response.status_code == 200 and response.headers["content-type"] == media
        angle = float(response.headers["x-upright-angle"])
        assert _close(angle, -70.0, 12) and 0 < float(response.headers["x-upright-confidence"]) <= 1
        bins = [float(v) for v in response.headers["x-upright-distribution"].split(",")]
        assert len(bins) == 72 and abs(sum(bins) - 1) < 0.01  # what the page draws, in one request
        assert response.headers["x-upright-size"] == "28x28"
        with Image.open(io.BytesIO(response.content)) as out:
            assert out.format == fmt and out.size[0] > 28  # the expanded canvas
    empty_page = _png(np.zeros((28, 28), np.uint8))
    blank = client.post("/v1/upright", files={"file": ("blank.png", empty_page, "image/png")})
    assert blank.headers["x-upright-action"] == "kept-unsure" and blank.content == empty_page  # by default
    forced = client.post("/v1/upright?min_confidence=0",
                         files={"file": ("blank.png", empty_page, "image/png")})
    assert forced.headers["x-upright-action"] == "rotated"


def test_a_jpeg_gets_the_angle_correct_and_the_api_give_it_and_its_full_size(client, tmp_path):
    """The server predicts from the reduced view ``correct`` and the API read (a whole
    decode gave angles up to 4 degrees apart), and still reports the photo's size."""
    import cv2

    import upright
    from upright.correction import CorrectOptions, correct_paths

    photo = cv2.resize(_digit(70.0, 1), (600, 600), interpolation=cv2.INTER_CUBIC)  # read at 1/8
    photo = np.clip(photo + np.random.default_rng(1).normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(path, quality=80)
    body = client.post("/v1/angle", files={"file": ("photo.jpg", path.read_bytes(), "image/jpeg")}).json()
    model = upright.load("mnist")
    rows = correct_paths([path], model.predictor, None, CorrectOptions(dry_run=True))
    assert body["angle"] == pytest.approx(model.predict(path).angle, abs=1e-3)
    assert body["angle"] == pytest.approx(rows[0].angle, abs=2e-3)
    assert (body["width"], body["height"]) == (600, 600)
    turned = client.post("/v1/upright?min_confidence=0",
                         files={"file": ("photo.jpg", path.read_bytes(), "image/jpeg")})
    assert float(turned.headers["x-upright-angle"]) == pytest.approx(body["angle"], abs=1e-3)
    with Image.open(io.BytesIO(turned.content)) as out:
        assert out.size == (600, 600)  # the whole photo turned, not the view


def test_a_chunked_upload_over_the_limit_is_refused_without_reading_it_all():
    """Driven at the ASGI level, as a server hands the app a body that declares no size: a
    test client would buffer the whole body before sending."""
    import asyncio
    import json

    from upright.serve.app import create_app

    app = create_app("mnist", max_bytes=200_000)
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
    chunks = [head] + [b"\0" * (1 << 20)] * 200  # 200 MiB if read to the end
    read, sent = 0, []

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/angle", "raw_path": b"/v1/angle", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"multipart/form-data; boundary=B"),
                                          (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert "over the limit of 200,000 bytes" in json.loads(sent[1]["body"])["detail"]
    assert read <= 2  # stopped at the first chunk past the limit


def _bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("url, name, data, status, words", [
    ("/v1/angle", "notes.png", b"hello, not an image", 400, "not an image file"),
    ("/v1/angle", "empty.png", b"", 400, "empty file"),
    ("/v1/angle", "huge.png", b"\0" * 300_000, 413, "over the limit of 200,000 bytes"),
    ("/v1/angle", "bomb.png", None, 413, "pixels"),
    ("/v1/angle?model=nope", "d.png", "digit", 404, "unknown model 'nope'"),
    ("/v1/upright?canvas=tilted", "d.png", "digit", 422, "canvas"),
    ("/v1/upright?fill=plaid", "d.png", "digit", 422, "not a fill colour"),
])
def test_bad_input_is_a_json_4xx_that_names_the_problem(client, url, name, data, status, words):
    data = _bomb_png() if data is None else _png(_digit(10.0)) if data == "digit" else data
    response = client.post(url, files={"file": (name, data, "image/png")})
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"])


@pytest.mark.slow  # 200 predictions: 4 s; CI runs it
def test_200_requests_8_at_a_time_are_all_answered_correctly(client):
    angles = [(-170 + 17 * i) % 360 - 180 for i in range(200)]
    payloads = [_png(_digit(a, i % 20)) for i, a in enumerate(angles)]

    def ask(i: int) -> float:
        response = client.post("/v1/angle", files={"file": (f"{i}.png", payloads[i], "image/png")})
        assert response.status_code == 200
        return response.json()["angle"]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(200)))
    alone = [client.post("/v1/angle", files={"file": ("x.png", payloads[i], "image/png")}).json()["angle"]
             for i in (0, 77, 199)]
    assert [got[0], got[77], got[199]] == pytest.approx(alone, abs=1e-3)  # same answer under load
    assert np.mean([_close(g, a, 15) for g, a in zip(got, angles, strict=True)]) > 0.85


def test_the_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html  # no CDN, no external font
    assert 'name="viewport"' in html and 'id="drop"' in html and 'type="file"' in html
