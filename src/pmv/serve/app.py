"""The HTTP API and web pages of ``pmv serve`` (FastAPI; run by uvicorn).

* ``POST /v1/predict``: a multipart upload in the field ``file`` (query or form fields ``top_k``, ``views``,
  ``frame=1`` for a middle frame to draw the crops on) -> top-k, per-crop top-1 and crop boxes, video facts.
* ``GET /v1/health``, ``GET /v1/model``, ``GET /v1/classes``, ``GET /v1/classes/{label}``,
  ``GET /v1/report/videos/{index}``; OpenAPI docs at ``/docs``; the pages at ``/`` and ``/taxonomy``.

Limits: uploads larger than ``max_upload_bytes`` get 413 (from Content-Length before reading, else while the body
streams in); an empty, non-video or damaged upload gets 415/422 with the reason; at most ``queue_size`` requests
are admitted (running or waiting for the model), others get 503 with Retry-After; a prediction that takes longer
than ``timeout_s`` gets 504. The model is loaded once and runs in one worker thread (one video at a time, so
requests do not fight over the CPU cores) while the next uploads are decoded in other threads. Uploads are written
to a temporary file in ``tmp_dir`` that is removed as soon as it is decoded, whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pmv.engine.predictor import Predictor
from pmv.errors import ConfigError, DataError
from pmv.serve.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
UNSUPPORTED = {"EmptyVideoError", "NotAVideoError", "NoVideoStreamError"}  # 415: not a video at all
CHUNK = 1 << 20

# The upload is parsed by hand (to cap its size while it streams in), so its form is described here for /docs.
PREDICT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video"},
        "views": {"type": "string", "description": "temporal x spatial views, e.g. 1x3 (default: the recipe's)"},
        "top_k": {"type": "integer", "description": "classes to return (default 5)"},
        "frame": {"type": "boolean", "description": "also return a middle frame as a PNG data URL"}}}}}}}
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "detail": {"type": "string"}}}}}}
ERROR_RESPONSES = {
    413: {"description": "the upload is larger than the server takes", **_ERROR},
    415: {"description": "the upload is not a video (empty, text, unknown container, no video stream)", **_ERROR},
    422: {"description": "a damaged or truncated video, or a bad parameter", **_ERROR},
    503: {"description": "busy: the request queue is full; see Retry-After", **_ERROR},
    504: {"description": "decoding and scoring took longer than the server's timeout", **_ERROR},
}


@dataclass
class ServeOptions:
    max_upload_bytes: int = 200 << 20
    queue_size: int = 4  # requests admitted at once (one runs, the rest wait for the model)
    timeout_s: float = 120.0  # per request, from the end of the upload to the answer
    tmp_dir: Optional[str] = None  # where uploads are written (default: the system temp folder)
    max_views: int = 30  # the most temporal x spatial views one request may ask for
    frame_height: int = 480  # height of the middle frame returned for the page
    retry_after_s: int = 2
    decode_threads: int = 2  # uploads decoded at once (the model scores one at a time)
    lists_dir: Optional[str] = None
    report_dir: Optional[str] = None
    videos_dir: Optional[str] = None


class _TooLarge(Exception):
    pass


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes are those of a common video container (then a file that fails to open is damaged,
    422, rather than not a video at all, 415)."""
    return (head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:11] == b"AVI")
            or head[:3] == b"FLV")


def _error(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class UploadLimit:
    """ASGI middleware: 413 for a ``POST /v1/predict`` body over the cap, checked from Content-Length before the
    body is read, and counted while it streams in (chunked uploads) by raising _TooLarge from ``receive``."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/predict":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Read (and drop) a body not far over the cap so the client sees the answer instead of a broken pipe;
            # a much larger one is answered at once (the client may then see the connection close).
            if int(declared) <= 2 * self.max_bytes + (1 << 20):
                while (await receive()).get("more_body", False):
                    pass
            response = _error(413, "upload too large",
                              f"the upload is {int(declared)} bytes; this server takes at most {self.max_bytes}")
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        return await self.app(scope, counted, send)


class Server:
    """The state of one server: the predictor, the admission counter, the model thread, the taxonomy."""

    def __init__(self, predictor: Predictor, options: ServeOptions, taxonomy: Taxonomy):
        self.predictor, self.options, self.taxonomy = predictor, options, taxonomy
        self.admitted = 0
        self.served = 0
        self.tmp_dir = Path(options.tmp_dir or tempfile.gettempdir())
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.decode_pool: Optional[ThreadPoolExecutor] = None
        self.model_pool: Optional[ThreadPoolExecutor] = None

    def release(self) -> None:
        self.admitted -= 1

    async def predict_file(self, path: Path, top_k: int, views: Optional[str], frame: bool, stage: dict):
        """Decode in the decoding threads (PyAV releases the GIL, so the next upload decodes while the model runs),
        then score in the model thread. ``stage["future"]`` is the job now running, so a request that timed out
        keeps its admission slot until that job really ends. The upload is removed as soon as decoding ends (or
        is cancelled before it started)."""
        decoder = self.predictor.decoder(views, self.options.frame_height if frame else 0)
        job = self.decode_pool.submit(decoder, str(path))
        job.add_done_callback(lambda _: path.unlink(missing_ok=True))
        stage["future"] = job
        decoded = await asyncio.wrap_future(job)
        if decoded.error is not None:
            return self.predictor.score(decoded)
        job = self.model_pool.submit(self.predictor.score, decoded, top_k=top_k, crops=True)
        stage["future"] = job
        return await asyncio.wrap_future(job)


def _call_soon(loop: asyncio.AbstractEventLoop, callback) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop closed (shutting down): nothing left to release
        pass


def _int_param(value, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def create_app(predictor: Predictor, options: ServeOptions | None = None) -> FastAPI:
    options = options or ServeOptions()
    taxonomy = load_taxonomy(predictor.class_names, lists_dir=options.lists_dir, report_dir=options.report_dir,
                             videos_dir=options.videos_dir)
    server = Server(predictor, options, taxonomy)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.decode_pool = ThreadPoolExecutor(max_workers=options.decode_threads, thread_name_prefix="pmv-decode")
        server.model_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pmv-model")
        try:
            yield
        finally:
            server.decode_pool.shutdown(wait=True, cancel_futures=True)
            server.model_pool.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(title="pmv serve", version="1",
                  description="Video recognition on portrait-mode videos: upload a video, get the top classes.",
                  lifespan=lifespan)
    app.state.server = server

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok", "model": predictor.model_name, "admitted": server.admitted,
                "queue_size": options.queue_size, "served": server.served}

    @app.get("/v1/model")
    async def model_info() -> dict:
        return {**predictor.describe(), "limits": {"max_upload_bytes": options.max_upload_bytes,
                                                   "queue_size": options.queue_size, "timeout_s": options.timeout_s,
                                                   "max_views": options.max_views}}

    @app.post("/v1/predict", responses=ERROR_RESPONSES, openapi_extra=PREDICT_BODY)
    async def predict(request: Request):
        """Upload a video in the multipart field ``file``; optional ``top_k`` (1..classes), ``views`` (TxS) and
        ``frame`` (1: include a middle frame as a PNG data URL) as query or form fields."""
        if server.admitted >= options.queue_size:
            return _error(503, "busy", f"{server.admitted} requests are being served; try again shortly",
                          headers={"Retry-After": str(options.retry_after_s)})
        server.admitted += 1
        stage: dict = {}  # the decode or model job of this request, once one is started
        upload_path: Optional[Path] = None
        form = None
        try:
            try:
                form = await request.form(max_files=1, max_fields=16)
            except _TooLarge:
                return _error(413, "upload too large", f"the upload is over {options.max_upload_bytes} bytes")
            except Exception as err:  # malformed multipart bodies raise several types inside Starlette
                return _error(422, "bad request", f"could not read the multipart form: {err}")
            params = {**dict(request.query_params), **{k: v for k, v in form.items() if isinstance(v, str)}}
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return _error(422, "no file", "send the video as multipart/form-data in the field 'file'")
            try:
                top_k = _int_param(params.get("top_k"), "top_k", 5, 1, len(predictor.class_names))
                views = params.get("views") or None
                spec = predictor.spec.with_views(views)
                if spec.temporal_views * spec.spatial_views > options.max_views:
                    raise ConfigError(f"views {views}: at most {options.max_views} views per request")
            except ConfigError as err:
                return _error(422, "bad parameter", str(err))
            frame = str(params.get("frame", "0")).lower() in ("1", "true", "yes")
            fd, name = tempfile.mkstemp(prefix="pmv-upload-", suffix=Path(upload.filename or "v.mp4").suffix[:8],
                                        dir=server.tmp_dir)
            upload_path = Path(name)
            size = 0
            head = b""
            with os.fdopen(fd, "wb") as handle:
                while chunk := await upload.read(CHUNK):
                    if size == 0:
                        head = chunk[:16]
                    size += len(chunk)
                    if size > options.max_upload_bytes:
                        return _error(413, "upload too large", f"the upload is over {options.max_upload_bytes} bytes")
                    handle.write(chunk)
            await upload.close()
            try:
                result = await asyncio.wait_for(server.predict_file(upload_path, top_k, views, frame, stage),
                                                timeout=options.timeout_s)
            except asyncio.TimeoutError:
                return _error(504, "timeout", f"the prediction took longer than {options.timeout_s:g} s")
            server.served += 1
            shown = upload.filename or "upload"
            if not result.ok:
                unsupported = result.error_kind in UNSUPPORTED and not (size and looks_like_video(head))
                status = 415 if unsupported else 422
                reason = (result.error or "").replace(str(upload_path), shown)
                return _error(status, "not a video" if status == 415 else "damaged video", reason)
            body = result.to_dict()
            body["path"] = shown
            body["model"] = predictor.model_name
            return body
        finally:
            running = stage.get("future")
            if running is not None and not running.done():  # timed out: the slot is freed when the job ends
                loop = asyncio.get_running_loop()
                running.add_done_callback(lambda _: _call_soon(loop, server.release))
            else:
                server.release()
            if upload_path is not None and "future" not in stage:
                upload_path.unlink(missing_ok=True)
            if form is not None:
                await form.close()  # Starlette's spooled copy of the upload (an unnamed temporary file)

    @app.get("/v1/classes")
    async def classes() -> dict:
        return {"report": taxonomy.report_name, "splits": list(taxonomy.counts),
                "has_accuracy": taxonomy.accuracy is not None, "classes": taxonomy.classes()}

    @app.get("/v1/classes/{label}")
    async def class_detail(label: int):
        try:
            return taxonomy.class_detail(label)
        except DataError as err:
            return _error(404, "no such class", str(err))

    @app.get("/v1/report/videos/{index}")
    async def report_video(index: int):
        path = taxonomy.video_path(index)
        if path is None or not path.is_file():
            return _error(404, "no such video", f"report video {index} is not listed or not on disk"
                          + (f" ({path})" if path else ""))
        return FileResponse(path)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/taxonomy", include_in_schema=False)
    async def taxonomy_page():
        return FileResponse(STATIC / "taxonomy.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(UploadLimit, max_bytes=options.max_upload_bytes)
    return app
