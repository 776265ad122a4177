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

Class mode (``class_mode``: a :class:`~mnistgap.collect.classroom.ClassMode`, for a page served
to a whole class on the network): every ``/api/`` call needs the header ``X-Class-Code`` (401
``{"error", "class_code_required": true}`` without it or with a wrong one); the first save
of a (group, member) answers a ``"member_token"`` that every later write for that member must
send as ``X-Member-Token`` (403 otherwise); ``GET /teacher`` (a page) and ``GET
/api/progress`` (``X-Teacher-Key``; 401 without it) show the class's progress; requests are
rate-limited per client address (429 ``{"error"}``, with ``Retry-After``).
In every mode the folder has a size cap (``max_folder_bytes``): a save that would pass it is
refused with 507.

Errors are ``{"error": "<one line>"}`` with a 4xx status: 400 bad or missing form fields or
query parameters, 403 a form posted from another site's page (its ``Origin``), 409 the file
exists (``replace`` not set), 413 upload over the limit, 422 an image the loader rejects (its
reason: not a PNG, corrupt, blank, filtered out), 507 the folder is at its size cap.
An unexpected failure is a 500 ``{"error": "internal error"}``, logged, never a traceback.

Uploads are stored byte for byte as received: the exact file that passed the checks is the
one published (it is checked *as the temporary file* that is then linked into place), so
``prepare_class`` reads it exactly as it was validated, and nothing is lost by re-encoding.
"""

from __future__ import annotations

import logging
import threading
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
from limits import parse as parse_limit
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from torch import nn

from mnistgap.collect import loader, store
from mnistgap.collect.classroom import (
    CODE_HEADER,
    TEACHER_HEADER,
    TOKEN_HEADER,
    TOKENS_FILE,
    ClassMode,
    MemberTokens,
    same_secret,
)
from mnistgap.collect.teacher import LeakageFlags, progress
from mnistgap.collect.upload import UploadError, read_form
from mnistgap.models import load_checkpoint
from mnistgap.params import Leakage, check_preprocess
from mnistgap.tta import predict_logits, views

log = logging.getLogger("mnistgap.collect")

STATIC = Path(__file__).resolve().parent / "static"
#: Largest accepted PNG. A canvas drawing is 5-30 KB, a phone photo of a digit a few MB.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
#: Default cap on the collection folder: ~15,000 canvas drawings, or 100 phone photos.
MAX_FOLDER_BYTES = 500 * 1024 * 1024
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


#: Most images read in one forward pass (see :meth:`Reader.read`).
MAX_BATCH = 64


class _Pending:
    """One image waiting for its reading."""

    __slots__ = ("failed", "image", "reading")

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.reading: Reading | None = None
        self.failed = False


class Reader:
    """The checkpoint, loaded once; thread-safe inference on single images, batched.

    Requests run in the server's thread pool. Each queues its image, then takes the model's
    lock; whoever holds it reads every queued image (up to :data:`MAX_BATCH`) in one forward
    pass, so a class drawing at once costs one pass per batch instead of one per image, and
    threads never contend inside torch. An image alone is read alone, as before.
    """

    def __init__(self, model: nn.Module | None, note: str | None, tta: str = "none") -> None:
        self.model = model
        self.note = note
        self.tta = tta
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()

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
        mine = _Pending(img28)
        with self._queue_lock:
            self._queue.append(mine)
        while mine.reading is None:
            with self._model_lock:
                if mine.reading is not None:  # read in another thread's batch
                    break
                if mine.failed:
                    raise RuntimeError("the model failed on a batch of readings")
                with self._queue_lock:
                    batch = self._queue[:MAX_BATCH]
                    del self._queue[:MAX_BATCH]
                try:
                    self._read_batch(batch)
                except BaseException:
                    for p in batch:
                        p.failed = True
                    raise
        return mine.reading

    def _read_batch(self, batch: list[_Pending]) -> None:
        assert self.model is not None
        images = torch.from_numpy(np.stack([p.image for p in batch]))
        with torch.inference_mode():
            probs = predict_logits(self.model, images, self.tta).softmax(dim=1)
        for p, row in zip(batch, probs, strict=True):
            digit = int(row.argmax())
            p.reading = Reading(
                digit, round(float(row[digit]), 4), [round(float(v), 4) for v in row]
            )


class _ClassCodeGate:
    """ASGI middleware: every ``/api/`` request but the teacher's needs the class code."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path.startswith("/api/") and path != "/api/progress":
                refusal = self.check(Request(scope))
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(
    out_dir: str | Path,
    model_path: str | Path | None = "models/model.pt",
    preprocess: str = "mnist",
    filter_cfg: Mapping[str, Any] | None = None,
    tta: str = "none",
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_folder_bytes: int = MAX_FOLDER_BYTES,
    class_mode: ClassMode | None = None,
    mnist_raw: str | Path | None = None,
    leakage_cfg: Mapping[str, Any] | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """The collect app, storing into ``out_dir`` (created if missing).

    ``preprocess``, ``filter_cfg`` and ``tta`` are params.yaml's ``class_digits.preprocess``,
    ``filter`` section and ``tta`` (plain values; None: the loader's default filter). The model at
    ``model_path`` is loaded here, once; if the file is missing the app still collects and
    answers ``"prediction": null`` with a ``"note"``.

    ``class_mode`` switches on the class code, member tokens, the teacher view and rate
    limits (see the module doc). The teacher view's leakage flags use the MNIST training
    images in ``mnist_raw`` and params.yaml's ``leakage`` section ``leakage_cfg``
    (``threshold``, ``ratio_threshold``; None: its defaults); without the images it says the
    check is off.
    ``public_url`` is the address students open (for the QR code; default: the address the
    teacher's browser used).
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
    tokens: MemberTokens | None = None
    leakage: LeakageFlags | None = None
    if class_mode is not None:
        tokens = MemberTokens(class_mode.tokens_file or folder / TOKENS_FILE)
        lk = Leakage.model_validate(dict(leakage_cfg or {}))  # None: the stage's defaults
        leakage = LeakageFlags(
            Path(mnist_raw) if mnist_raw is not None else None,
            lk.threshold,
            lk.ratio_threshold,
            preprocess,
            fcfg,
        )
        if leakage.note:
            log.warning("teacher view: %s", leakage.note)
    # Per client address; off outside class mode (a local page has one client), where the
    # decorators below get ClassMode's defaults, unused.
    cm: Any = class_mode or ClassMode
    limiter = Limiter(key_func=get_remote_address, enabled=class_mode is not None)
    app.state.limiter = limiter
    auth_failures = parse_limit(cm.auth_failure_limit)

    def refuse_auth(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
        # A wrong code or key counts against the client: guessing is throttled.
        address = get_remote_address(request)
        if not limiter.limiter.hit(auth_failures, "auth-failures", address):
            return JSONResponse(
                {"error": "too many wrong codes from this address: wait a minute"},
                status_code=429,
                headers={"Retry-After": "60"},
            )
        return JSONResponse({"error": message, **extra}, status_code=status)

    def check_code(request: Request) -> JSONResponse | None:
        if class_mode is None or same_secret(request.headers.get(CODE_HEADER), class_mode.code):
            return None
        given = CODE_HEADER in request.headers
        return refuse_auth(
            request,
            401,
            "wrong class code" if given else "this page needs the class code (ask your teacher)",
            class_code_required=True,
        )

    if class_mode is not None:
        app.add_middleware(_ClassCodeGate, check=check_code)

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
        used = store.folder_bytes(folder)
        if used + len(data) > max_folder_bytes:
            raise ApiError(
                507,
                f"the collection folder is full ({used / 2**20:.1f} MB of its "
                f"{max_folder_bytes / 2**20:.1f} MB cap): nothing more can be saved, "
                "tell your teacher",
            )
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

    def save_as_member(
        data: bytes, digit: int, group: int, member: int, replace: bool, token: str | None
    ) -> dict[str, Any]:
        """``save``, in class mode only for the member's token holder (the first save gets
        the token)."""
        if tokens is None:
            return save(data, digit, group, member, replace)
        try:
            issued = tokens.claim(group, member, token)
        except PermissionError as err:
            raise ApiError(403, str(err)) from None
        try:
            body = save(data, digit, group, member, replace)
        except BaseException:
            if issued is not None:
                tokens.release(group, member, issued)
            raise
        if issued is not None:
            body["member_token"] = issued
        return body

    def predict(data: bytes) -> dict[str, Any]:
        img = check_image(data)  # nothing is written for a reading
        return reading_json(reader.read(img), probabilities=True)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RateLimitExceeded)
    async def rate_limited(_: Request, exc: RateLimitExceeded) -> JSONResponse:
        return JSONResponse(
            {"error": f"too many requests from this address (limit {exc.detail}): slow down"},
            status_code=429,
            headers={"Retry-After": "1"},
        )

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

    @app.get("/teacher", include_in_schema=False)
    async def teacher_page() -> FileResponse:
        if class_mode is None:
            raise ApiError(404, "the teacher view needs class mode (--class-code)")
        return FileResponse(STATIC / "teacher.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/progress")
    @limiter.limit(cm.read_limit)
    async def get_progress(request: Request) -> Any:
        if class_mode is None or tokens is None or leakage is None:
            raise ApiError(404, "the teacher view needs class mode (--class-code)")
        if not same_secret(request.headers.get(TEACHER_HEADER), class_mode.teacher_key):
            return refuse_auth(request, 401, f"the teacher view needs the {TEACHER_HEADER}")
        url = public_url or str(request.base_url)
        return await run_in_threadpool(progress, folder, tokens.members(), leakage, url)

    @app.get("/api/info")
    @limiter.limit(cm.read_limit)
    async def info(request: Request) -> dict[str, Any]:
        return {
            "model": Path(model_path).name if reader.model is not None and model_path else None,
            "note": reader.note,
            "preprocess": preprocess,
            "tta": tta,
            "filter": loader.filter_dict(fcfg),
            "max_upload_bytes": max_upload_bytes,
            "class_mode": class_mode is not None,
        }

    @app.post("/api/digits", status_code=201)
    @limiter.limit(cm.save_limit)
    async def post_digit(request: Request) -> JSONResponse:
        f = await form(request, ("digit", "group", "member", "replace"))
        digit = _number("digit", f.fields.get("digit"), 0, 9)
        group = _number("group", f.fields.get("group"), 1, 10**MAX_NUMBER_DIGITS - 1)
        member = _number("member", f.fields.get("member"), 1, 10**MAX_NUMBER_DIGITS - 1)
        replace = _flag("replace", f.fields.get("replace"))
        token = request.headers.get(TOKEN_HEADER)
        body = await run_in_threadpool(
            save_as_member, image_of(f), digit, group, member, replace, token
        )
        return JSONResponse(body, status_code=200 if body["replaced"] else 201)

    @app.post("/api/predict")
    @limiter.limit(cm.predict_limit)
    async def post_predict(request: Request) -> dict[str, Any]:
        f = await form(request, ())
        return await run_in_threadpool(predict, image_of(f))

    @app.get("/api/digits")
    @limiter.limit(cm.read_limit)
    async def list_digits(
        request: Request, group: str | None = None, member: str | None = None
    ) -> dict[str, Any]:
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
