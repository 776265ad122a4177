"""The collect web app: a page to draw digits, and a small JSON API that stores them.

``create_app(out_dir, model_path, preprocess, filter_cfg)`` builds the FastAPI app from plain
values (the CLI reads them from ``params.yaml``; this module never does). The API:

* ``POST /api/digits`` (multipart: ``digit``, ``group``, ``member``, ``image``, optional
  ``replace``) stores ``<digit>-<group>-<member>.png`` in ``out_dir`` → 201 ``{"file",
  "prediction", "confidence", "replaced"}`` (200 when ``replace`` overwrote a file).
* ``POST /api/predict`` (multipart: ``image``) → ``{"prediction", "confidence",
  "probabilities"}``, the model's reading with the same preprocessing; nothing is kept.
* ``GET /api/digits?group=G&member=M`` (both optional) → ``{"count", "digits": [...]}``.
* ``GET /api/info`` → model, preprocessing, filter and size limit, for the page.

Errors are ``{"error": "<one line>"}`` with a 4xx status: 400 bad or missing form fields or
query parameters, 403 a form posted from another site's page (its ``Origin``), 409 the file
exists (``replace`` not set), 413 upload over the limit, 422 an image the loader rejects (its
reason: not a PNG, corrupt, blank, filtered out).
An unexpected failure is a 500 ``{"error": "internal error"}``, logged, never a traceback.

Uploads are stored byte for byte as received: the exact file that passed the checks is the
one published (it is checked *as the temporary file* that is then linked into place), so
``prepare_class`` reads it exactly as it was validated, and nothing is lost by re-encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from torch import nn

from mnistgap.collect import loader, store
from mnistgap.collect.upload import UploadError, read_form
from mnistgap.models import load_checkpoint
from mnistgap.params import check_preprocess
from mnistgap.tta import predict_logits, views

log = logging.getLogger("mnistgap.collect")

STATIC = Path(__file__).resolve().parent / "static"
#: Largest accepted PNG. A canvas drawing is 5-30 KB, a phone photo of a digit a few MB.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
#: Group and member numbers: 1 .. 999,999,999 (at most 9 decimal digits).
MAX_NUMBER_DIGITS = 9
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"", "0", "false", "off", "no"}


class ApiError(Exception):
    """An expected failure answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _number(label: str, text: str | None, low: int, high: int) -> int:
    """A form or query integer: ASCII digits only (no sign, space or exponent), in range."""
    if text is None or text == "":
        raise ApiError(400, f"{label} is required")
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, f"{label} must be a whole number, got {text[:20]!r}")
    if len(text.lstrip("0")) > len(str(high)):
        raise ApiError(400, f"{label} must be between {low} and {high}")
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, f"{label} must be between {low} and {high}")
    return value


def _flag(label: str, text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(400, f"{label} must be true or false, got {text[:20]!r}")


@dataclass(frozen=True)
class Reading:
    """The model's reading of one 28×28 image."""

    prediction: int
    confidence: float
    probabilities: list[float]


class Reader:
    """The checkpoint, loaded once; thread-safe inference on single images."""

    def __init__(self, model: nn.Module | None, note: str | None, tta: str = "none") -> None:
        self.model = model
        self.note = note
        self.tta = tta

    @classmethod
    def load(cls, model_path: Path | None, tta: str = "none") -> Reader:
        """Load ``model_path`` (weights_only); a missing file gives a reader without a model.

        A file that exists but is not a usable checkpoint raises (a real mistake to fix).
        """
        if model_path is None:
            return cls(None, "no model given: predictions are off", tta)
        if not Path(model_path).is_file():
            return cls(None, f"no model at {model_path}: predictions are off", tta)
        try:
            model, _ = load_checkpoint(model_path, "cpu")
        except Exception as err:  # torch raises many kinds for a damaged file
            detail = " ".join(str(err).split())[:200] or type(err).__name__
            raise ValueError(f"cannot load model {model_path}: {detail}") from None
        return cls(model, None, tta)

    def read(self, img28: np.ndarray) -> Reading | None:
        if self.model is None:
            return None
        with torch.inference_mode():
            logits = predict_logits(self.model, torch.from_numpy(img28[None]), self.tta)
        probs = logits.softmax(dim=1)[0]
        digit = int(probs.argmax())
        return Reading(digit, round(float(probs[digit]), 4), [round(float(p), 4) for p in probs])


def create_app(
    out_dir: str | Path,
    model_path: str | Path | None = "models/model.pt",
    preprocess: str = "mnist",
    filter_cfg: Mapping[str, Any] | None = None,
    tta: str = "none",
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The collect app, storing into ``out_dir`` (created if missing).

    ``preprocess``, ``filter_cfg`` and ``tta`` are params.yaml's ``class_digits.preprocess``,
    ``filter`` section and ``tta`` (plain values; None: the loader's default filter). The model at
    ``model_path`` is loaded here, once; if the file is missing the app still collects and
    answers ``"prediction": null`` with a ``"note"``.
    """
    check_preprocess(preprocess)
    views(tta)  # an unknown value fails here, at start-up, not at the first reading
    fcfg = loader.filter_config(filter_cfg)
    reader = Reader.load(Path(model_path) if model_path is not None else None, tta)
    if reader.note:
        log.warning("%s", reader.note)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in store.remove_stale_temps(folder):
        log.info("removed %s left by an interrupted server", stale.name)

    app = FastAPI(
        title="mnistgap collect", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.out_dir = folder
    app.state.reader = reader

    async def form(request: Request, text_fields: tuple[str, ...]):
        # Another web site open in the same browser may post forms to 127.0.0.1 too (a form
        # POST needs no CORS preflight); only the page served here may write.
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise ApiError(403, "uploads are accepted only from this server's own page")
        return await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            file_field="image",
            text_fields=text_fields,
            max_file_bytes=max_upload_bytes,
        )

    def image_of(f) -> bytes:
        if f.file is None:
            raise ApiError(400, "image is required (a PNG file)")
        return f.file

    def reading_json(reading: Reading | None, *, probabilities: bool) -> dict[str, Any]:
        if reading is None:
            out: dict[str, Any] = {"prediction": None, "confidence": None, "note": reader.note}
            if probabilities:
                out["probabilities"] = None
            return out
        out = {"prediction": reading.prediction, "confidence": reading.confidence}
        if probabilities:
            out["probabilities"] = reading.probabilities
        return out

    def check_image(source: Path | bytes) -> np.ndarray:
        try:
            return loader.read_digit(source, preprocess, fcfg)
        except loader.ImageRejected as err:
            raise ApiError(422, str(err)) from None

    def save(data: bytes, digit: int, group: int, member: int, replace: bool) -> dict[str, Any]:
        try:
            name = loader.name_for(digit, group, member)
        except ValueError as err:
            raise ApiError(400, str(err)) from None
        final = folder / name
        with store.spooled(folder, data) as tmp:
            img = check_image(tmp)
            # A hand-placed "7-01-2.png" is the same digit as "7-1-2.png" to the loader,
            # which would reject one of the two as a duplicate.
            twin = loader.twin_of(folder, name)
            if twin is not None:
                raise ApiError(409, f"this digit is already saved as {twin}", file=twin)
            try:
                replaced = store.publish(tmp, final, replace=replace)
            except FileExistsError:
                raise ApiError(
                    409, f"{name} already exists (send replace=true to overwrite it)", file=name
                ) from None
        log.info("%s %s", "replaced" if replaced else "saved", name)
        return {
            "file": name,
            **reading_json(reader.read(img), probabilities=False),
            "replaced": replaced,
        }

    def predict(data: bytes) -> dict[str, Any]:
        img = check_image(data)  # nothing is written for a reading
        return reading_json(reader.read(img), probabilities=True)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "model": Path(model_path).name if reader.model is not None and model_path else None,
            "note": reader.note,
            "preprocess": preprocess,
            "tta": tta,
            "filter": loader.filter_dict(fcfg),
            "max_upload_bytes": max_upload_bytes,
        }

    @app.post("/api/digits", status_code=201)
    async def post_digit(request: Request) -> JSONResponse:
        f = await form(request, ("digit", "group", "member", "replace"))
        digit = _number("digit", f.fields.get("digit"), 0, 9)
        group = _number("group", f.fields.get("group"), 1, 10**MAX_NUMBER_DIGITS - 1)
        member = _number("member", f.fields.get("member"), 1, 10**MAX_NUMBER_DIGITS - 1)
        replace = _flag("replace", f.fields.get("replace"))
        body = await run_in_threadpool(save, image_of(f), digit, group, member, replace)
        return JSONResponse(body, status_code=200 if body["replaced"] else 201)

    @app.post("/api/predict")
    async def post_predict(request: Request) -> dict[str, Any]:
        f = await form(request, ())
        return await run_in_threadpool(predict, image_of(f))

    @app.get("/api/digits")
    async def list_digits(group: str | None = None, member: str | None = None) -> dict[str, Any]:
        high = 10**MAX_NUMBER_DIGITS - 1
        g = _number("group", group, 1, high) if group is not None else None
        m = _number("member", member, 1, high) if member is not None else None
        rows = []
        for file, n in await run_in_threadpool(loader.saved_digits, folder):
            if (g is None or n.group == g) and (m is None or n.member == m):
                rows.append({"file": file, "digit": n.digit, "group": n.group, "member": n.member})
        rows.sort(key=lambda r: (r["group"], r["member"], r["digit"], r["file"]))
        return {"count": len(rows), "digits": rows}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
