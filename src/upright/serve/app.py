"""``upright serve``: an HTTP API and a page over the Python API (FastAPI).

POST /v1/angle   an image upload (multipart field ``file``) -> JSON: angle, confidence,
                 runner-up, the distribution in 5-degree bins, size, model
POST /v1/upright the corrected image in the upload's format; X-Upright-Angle,
                 -Confidence, -Second (angle,mass), -Distribution (5-degree bins),
                 -Size, -Action headers; canvas, fill, min_confidence
GET  /v1/models  the models this server can use
GET  /healthz    liveness
GET  /           the page (self-contained: no CDN, no external font)

A bad upload is a JSON 4xx naming the problem (not an image, too large, too many pixels,
unknown model); models load once; inference runs in worker threads, at most
``concurrency`` at a time.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from upright import __version__, api
from upright.confidence import DEFAULT_MIN_CONFIDENCE
from upright.imagefiles import ImageFileError, displayed_size, encode_image, read_image
from upright.shipped import SHIPPED_MODELS, shipped_model

DEFAULT_MAX_BYTES = 20 << 20
DISTRIBUTION_BIN = 5  # degrees per bin of the distribution a client draws
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp", "TIFF": "image/tiff",
               "WEBP": "image/webp"}


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class BodyLimit:
    """Refuses a POST body over ``limit`` bytes: at once where its Content-Length says so,
    else (a chunked upload declares no size) as soon as that many bytes have come, so no
    client can make the server read or spool more."""

    def __init__(self, app, max_bytes: int) -> None:
        # The form's own bytes (boundaries, headers) come on top of the file's.
        self.app, self.max_bytes, self.limit = app, max_bytes, max_bytes + (64 << 10)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": f"upload of {int(declared):,} bytes is over the limit "
                                               f"of {self.max_bytes:,} bytes"}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # An HTTPException passes FastAPI's form parsing unchanged: a 413, not a 400.
                raise StarletteHTTPException(413, f"upload over the limit of {self.max_bytes:,} bytes "
                                                  "(stopped reading)")
            return message

        await self.app(scope, counted, send)


class Models:
    """Models by name, each loaded once on first use; only the allowed names."""

    def __init__(self, default: str, allowed: list[str]) -> None:
        self.default, self.allowed = default, allowed
        self.loaded: dict[str, api.Model] = {}
        self.lock = asyncio.Lock()

    async def get(self, name: str | None) -> api.Model:
        name = name or self.default
        if name not in self.allowed:
            raise HTTPProblem(404, f"unknown model {name!r}; this server has: {', '.join(self.allowed)}")
        async with self.lock:
            if name not in self.loaded:
                self.loaded[name] = await run_in_threadpool(api.load, name)
        return self.loaded[name]


def create_app(model: str = "mnist", max_bytes: int = DEFAULT_MAX_BYTES, concurrency: int = 2,
               extra_models: list[str] | None = None) -> FastAPI:
    names = [n for n in SHIPPED_MODELS if shipped_model(n) is not None]
    allowed = list(dict.fromkeys([model, *names, *(extra_models or [])]))
    models = Models(model, allowed)
    slots = asyncio.Semaphore(concurrency)
    app = FastAPI(title="upright", version=__version__,
                  description="Predict an image's rotation angle and turn it upright.")

    @app.exception_handler(HTTPProblem)
    async def problem(_: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPProblem(413, f"{file.filename or 'upload'}: over the limit of {max_bytes:,} bytes")
        if not data:
            raise HTTPProblem(400, f"{file.filename or 'upload'}: empty file")
        return data

    def decode(data: bytes, name: str, min_side: int | None = None):
        """The upload decoded (``min_side``: a view to predict from, as ``correct`` reads
        one, so both give the same angle) and its displayed size at full scale."""
        from upright.correction import FILE_ERRORS, failure_text

        suffix = Path(name).suffix.lower() if name else ""
        fd, tmp = tempfile.mkstemp(suffix=suffix[:8] if suffix.isascii() else "")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            decoded = read_image(tmp, min_side=min_side)
            size = displayed_size(tmp) if decoded.scale != 1 else decoded.pixels.shape[1::-1]
        except ImageFileError as exc:
            text = str(exc).replace(tmp, name or "upload")
            status = 413 if "pixels" in text and ("limit" in text or "bomb" in text) else 400
            raise HTTPProblem(status, text) from None
        except FILE_ERRORS as exc:
            raise HTTPProblem(400, failure_text(Path(name or "upload"), exc)) from None
        finally:
            os.unlink(tmp)
        return decoded, tuple(size)

    async def predict(data: bytes, name: str, model: api.Model):
        from upright.correction import view_side

        async with slots:
            def work():
                decoded, size = decode(data, name, view_side(model.spec))
                return decoded, size, model._predict_pixels([(decoded.pixels, decoded.mode)])[0]
            return await run_in_threadpool(work)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"default": model, "models": [{"name": n, "loaded": n in models.loaded} for n in allowed]}

    @app.post("/v1/angle")
    async def angle(file: Annotated[UploadFile, File()],
                    model_name: Annotated[str | None, Query(alias="model")] = None):
        chosen = await models.get(model_name)
        data = await read_upload(file)
        _, (width, height), prediction = await predict(data, file.filename or "", chosen)
        return {"file": file.filename, "angle": prediction.angle, "confidence": prediction.confidence,
                "second_angle": prediction.second_angle, "second_mass": prediction.second_mass,
                "distribution": _coarse(prediction.distribution), "width": width, "height": height,
                "model": chosen.name}

    @app.post("/v1/upright")
    async def upright_image(file: Annotated[UploadFile, File()],
                            model_name: Annotated[str | None, Query(alias="model")] = None,
                            canvas: Annotated[str, Query(pattern="^(same|expand|crop)$")] = "same",
                            fill: str = "black",
                            min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = DEFAULT_MIN_CONFIDENCE):
        from upright.correction import FILE_ERRORS, failure_text, parse_fill, turned_pixels

        chosen = await models.get(model_name)
        try:
            fill_rgb = parse_fill(fill)
        except ValueError as exc:
            raise HTTPProblem(422, str(exc)) from None
        data = await read_upload(file)
        name = file.filename or "upload"
        view, (width, height), prediction = await predict(data, file.filename or "", chosen)
        unsure = prediction.confidence is not None and prediction.confidence < min_confidence

        def turn() -> bytes:
            if unsure:
                return data
            # A prediction view is never written: the whole image only now, to turn.
            decoded = view if view.scale == 1 else decode(data, file.filename or "")[0]
            try:
                turned = turned_pixels(decoded, -prediction.angle, canvas, fill_rgb, name)
                return encode_image(decoded, turned)
            except ImageFileError as exc:  # the canvas would be over the pixel limit
                raise HTTPProblem(413, str(exc)) from None
            except FILE_ERRORS as exc:  # what the libraries raise on one odd file: not a 500
                raise HTTPProblem(422, failure_text(Path(name), exc)) from None

        async with slots:
            body = await run_in_threadpool(turn)
        headers = {"X-Upright-Angle": f"{prediction.angle:.3f}",
                   "X-Upright-Action": "kept-unsure" if unsure else "rotated",
                   "X-Upright-Size": f"{width}x{height}"}
        if prediction.confidence is not None:
            headers["X-Upright-Confidence"] = f"{prediction.confidence:.4f}"
            # What the page draws, so one request per image gives it everything.
            headers["X-Upright-Distribution"] = ",".join(f"{v:.4f}" for v in _coarse(prediction.distribution))
        if prediction.second_angle is not None:
            headers["X-Upright-Second"] = f"{prediction.second_angle:.1f},{prediction.second_mass:.4f}"
        return Response(body, media_type=MEDIA_TYPES.get(view.format, "application/octet-stream"),
                        headers=headers)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("upright.serve").joinpath("page.html").read_text(encoding="utf-8")

    return app


def _coarse(distribution: np.ndarray | None) -> list[float] | None:
    """The distribution in DISTRIBUTION_BIN-degree bins from -180 (what the page draws)."""
    if distribution is None:
        return None
    per = max(1, round(len(distribution) * DISTRIBUTION_BIN / 360))
    usable = len(distribution) // per * per
    return [round(float(v), 5) for v in np.asarray(distribution[:usable]).reshape(-1, per).sum(1)]


def serve(host: str = "127.0.0.1", port: int = 8000, model: str = "mnist",
          max_bytes: int = DEFAULT_MAX_BYTES, concurrency: int = 2) -> None:
    import uvicorn

    api.load(model)  # a bad model name fails here (a UserError), before the server starts
    uvicorn.run(create_app(model, max_bytes, concurrency), host=host, port=port, log_level="info")
