"""``ponder serve``: the HTTP API over one index snapshot; docs/api.md describes it.

The snapshot, models and trace store load once when the application starts. Every call
into them runs on one solver thread (see jobs/solver_worker.py), so the event loop only
parses requests, checks them and streams results. Callers are identified by API key and
read only what their key's access groups allow, traces and statistics included.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.policies import policy_names
from indexer.store import StoreError, quote
from jobs.server_config import Caller, ServeConfig
from jobs.solver_worker import QueueFullError, SolverWorker
from solver.episode import EpisodeResult, step_to_dict
from solver.search import QueryError
from solver.service import Ponder, check_request
from solver.traces import TraceStore

logger = logging.getLogger("ponder.server")

API_PREFIX = "/v1"
EPISODE_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_GOLD_CHARS = 1_000
MAX_FEEDBACK_ANSWER_CHARS = 2_000
EXPORT_ROWS_PER_CHUNK = 1_000
EXPORT_BYTES_PER_CHUNK = 1 << 20
# Control characters other than tab, line feed and carriage return.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD_CHARACTER = re.compile(r"[^\W_]", re.UNICODE)
THROTTLED_LOG_SECONDS = 60.0


class ApiError(Exception):
    """A request the server rejects, with the HTTP status and the message sent back."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class AskRequest(BaseModel):
    """A question to answer as one budgeted episode."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "Who portrayed Corliss Archer in the film Kiss and Tell?", "budget": 4000, "policy": "adaptive"}]
        },
    )

    question: str = Field(description="The question, in plain text.")
    budget: float | None = Field(None, description="Maximum tokens the episode may spend; the server default when omitted.")
    policy: str | None = Field(None, description="Controller policy, such as fixed or adaptive; the server default when omitted.")
    gold: list[str] | None = Field(None, description="Accepted answers; when given, the trace records whether the answer matched.")


class FeedbackRequest(BaseModel):
    """A caller's verdict on the answer of an episode."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"correct": False, "answer": "Chief of Protocol"}]})

    correct: bool = Field(description="Whether the answer was right.")
    answer: str | None = Field(None, max_length=MAX_FEEDBACK_ANSWER_CHARS, description="The right answer, when it was wrong.")


@dataclass(frozen=True)
class EpisodeRequest:
    """An ask request after every check, with the caller it runs for."""

    question: str
    budget: float
    policy: str
    gold: list[str] | None
    caller: Caller
    policy_options: dict[str, str] = field(default_factory=dict)


@dataclass
class ServerState:
    """Shared state of the application: settings, the solver thread and the loaded index."""

    db: str
    config: ServeConfig
    worker: SolverWorker
    ponder: Ponder | None = None
    stopping: bool = False
    rejected_keys: ThrottledLog = field(default_factory=lambda: ThrottledLog("rejected request"))
    queue_full: ThrottledLog = field(default_factory=lambda: ThrottledLog("solver queue full"))

    def ready_ponder(self) -> Ponder:
        if self.ponder is None or self.stopping:
            raise ApiError(503, "the server is not ready: the index is not loaded or the server is stopping")
        return self.ponder

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        try:
            return self.worker.submit(function, *args, **kwargs)
        except QueueFullError as error:
            self.queue_full.record(f"{self.worker.pending} requests pending, capacity {self.worker.capacity}")
            raise ApiError(503, str(error), headers={"Retry-After": "1"}) from None

    async def run(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` on the solver thread; unexpected errors become a 500 with a logged error id."""
        future = self.submit(function, *args, **kwargs)
        try:
            return await future
        except (ApiError, QueryError):
            raise
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            logger.exception("%s failed (error id %s)", what, error_id)
            raise ApiError(500, f"internal error while running {what}; error id {error_id}") from None


class ThrottledLog:
    """A warning that is logged at most once per ``interval`` seconds, with the count of events since the last line."""

    def __init__(self, label: str, interval: float = THROTTLED_LOG_SECONDS) -> None:
        self.label = label
        self.interval = interval
        self._lock = threading.Lock()
        self._count = 0
        self._last = -interval

    def record(self, detail: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            count, self._count, self._last = self._count, 0, now
        logger.warning("%s: %s (%d since the last such line)", self.label, detail, count)


class BodyLimitMiddleware:
    """Reject request bodies above ``max_bytes`` with 413, before the JSON parser reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than the limit of {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status = 413 if length.isdigit() else 400
            text = message if length.isdigit() else "the Content-Length header is not a number"
            await JSONResponse({"error": text}, status_code=status)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while it reads the body on to its handler.
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key configured for the server, sent as: Authorization: Bearer KEY. Not needed in local mode.",
)


def _state(request: Request) -> ServerState:
    return request.app.state.server


def require_caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """Identify the caller from its API key, or raise 401."""
    state = _state(request)
    caller = state.config.identify(credentials.credentials if credentials else None)
    if caller is not None:
        return caller
    client = request.client.host if request.client else "unknown"
    if credentials is None:
        state.rejected_keys.record(f"no API key from {client}")
        message = "missing API key; send the header: Authorization: Bearer KEY"
    else:
        state.rejected_keys.record(f"unknown API key from {client}")
        message = "invalid API key"
    raise ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def create_app(db: str, config: ServeConfig, *, load: Callable[[str], Ponder] = Ponder) -> FastAPI:
    """Build the application; ``load`` opens the index when the application starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ServerState = app.state.server
        started = time.perf_counter()
        logger.info("starting: loading the index at %s", db)
        try:
            ponder = await state.worker.submit(load, db)
        except StoreError as error:
            logger.error("cannot start: %s", error)
            state.worker.shutdown()
            raise
        # Every episode is written at once, so a stopped server loses no trace.
        if ponder.traces is not None:
            ponder.traces.flush_every = 1
        state.ponder = ponder
        _log_access_mode(config)
        logger.info("ready: index version %d of %s loaded in %.1f s", ponder.version, db, time.perf_counter() - started)
        try:
            yield
        finally:
            state.stopping = True
            logger.info("stopping: finishing the running request")
            await asyncio.to_thread(state.worker.shutdown)
            ponder.close()
            logger.info("stopped")

    app = FastAPI(
        title="Ponder",
        summary="Budgeted, step-traced question answering over a private corpus.",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.server = ServerState(db=db, config=config, worker=SolverWorker(config.queue_limit))
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    _add_error_handlers(app)
    _add_health_routes(app)
    _add_api_routes(app)
    return app


def _log_access_mode(config: ServeConfig) -> None:
    if config.local_mode:
        logger.warning("no API keys configured: local mode, every caller gets only the 'public' group")
        return
    names = ", ".join(key.name for key in config.keys)
    logger.info("%d API keys configured: %s", len(config.keys), names)
    if config.anonymous_groups:
        logger.info("callers without a key get the groups %s", list(config.anonymous_groups))
    else:
        logger.info("callers without a key are rejected")


def _package_version() -> str:
    try:
        return metadata.version("ponder")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- errors ---------------------------------------------------------------------------


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(QueryError)
    async def query_error(_request: Request, error: QueryError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        status, message, details = _describe_validation_error(error)
        return JSONResponse({"error": message, "details": details}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        logger.error("%s %s failed (error id %s)", request.method, request.url.path, error_id, exc_info=error)
        return JSONResponse({"error": f"internal error; error id {error_id}"}, status_code=500)


def _describe_validation_error(error: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    """Turn pydantic's errors into a status, one readable message and a short list without the input."""
    details = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        details.append({"location": location, "message": item["msg"], "type": item["type"]})
    first = error.errors()[0] if error.errors() else {"type": "", "loc": (), "msg": "invalid request"}
    if first["type"] == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "decode error")
        return 400, f"the request body is not valid JSON: {reason} at character {first['loc'][-1]}", details
    if tuple(first["loc"]) == ("body",) and first["type"] in {"model_attributes_type", "dict_type", "missing"}:
        return 422, "the request body must be a JSON object sent with Content-Type: application/json", details
    message = "; ".join(f"{detail['location']}: {detail['message']}" for detail in details)
    return 422, f"invalid request: {message}", details


# -- health ---------------------------------------------------------------------------


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process responds to HTTP requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "The index is not loaded, or the server is stopping."}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the index snapshot is loaded and the server is not stopping."""
        state = _state(request)
        if state.ponder is None or state.stopping:
            status = "stopping" if state.stopping else "loading"
            return JSONResponse({"status": status}, status_code=503)
        body = {
            "status": "ready",
            "index_version": state.ponder.version,
            "pending_requests": state.worker.pending,
            "capacity": state.worker.capacity,
        }
        return JSONResponse(body)


# -- the API --------------------------------------------------------------------------


def _add_api_routes(app: FastAPI) -> None:
    busy = {503: {"description": "The solver queue is full (retry later) or the server is not ready."}}
    rejected = {
        400: {"description": "The body is not valid JSON."},
        401: {"description": "The API key is missing or invalid."},
        413: {"description": "The body is larger than the limit."},
        422: {"description": "A field is missing or has an invalid value."},
    }

    @app.post(f"{API_PREFIX}/ask", tags=["answers"], responses={**rejected, **busy})
    async def ask(body: AskRequest, request: Request, caller: Caller = Depends(require_caller)) -> dict[str, Any]:
        """Answer a question and return the episode: answer, citations, cost and every step."""
        state = _state(request)
        episode = _check_ask(body, state.config, caller)
        ponder = state.ready_ponder()
        result = await state.run("an episode", _run_episode, ponder, episode, None)
        return result.to_dict()

    @app.post(f"{API_PREFIX}/ask/stream", tags=["answers"], responses={**rejected, **busy})
    async def ask_stream(body: AskRequest, request: Request, caller: Caller = Depends(require_caller)) -> EventSourceResponse:
        """Answer a question, sending each step as a server-sent event as it ends.

        Events: ``step`` (one per step, the same fields as ``steps`` of /v1/ask), then
        either ``result`` (the whole episode) or ``error`` (with an error id).
        """
        state = _state(request)
        episode = _check_ask(body, state.config, caller)
        ponder = state.ready_ponder()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        def emit(kind: str, data: dict[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, data))
            except RuntimeError:  # the event loop has closed: the server is stopping
                pass

        future = state.submit(_run_streamed_episode, ponder, episode, emit)
        return EventSourceResponse(_stream_events(events, future), ping=15)

    @app.post(
        f"{API_PREFIX}/episodes/{{episode_id}}/feedback",
        tags=["traces"],
        responses={**rejected, **busy, 404: {"description": "No episode with this id that the caller may see."}},
    )
    async def feedback(
        body: FeedbackRequest,
        request: Request,
        episode_id: str = Path(pattern=EPISODE_ID_PATTERN, description="Episode id as returned by /v1/ask (32 hex digits)."),
        caller: Caller = Depends(require_caller),
    ) -> dict[str, Any]:
        """Record whether an episode's answer was right; the trace export carries it."""
        state = _state(request)
        ponder = state.ready_ponder()
        row = await state.run("feedback", _record_feedback, ponder, episode_id, body, caller)
        logger.info("feedback on episode %s from %s: %s", episode_id, caller.user, row["outcome"])
        return {
            "episode_id": row["episode_id"],
            "outcome": row["outcome"],
            "outcome_source": row["outcome_source"],
            "feedback_answer": row["feedback_answer"],
        }

    @app.get(f"{API_PREFIX}/traces/export", tags=["traces"], responses={**rejected, **busy})
    async def export_traces(
        request: Request,
        export_format: Literal["jsonl", "parquet"] = Query("jsonl", alias="format", description="jsonl or parquet."),
        caller: Caller = Depends(require_caller),
    ) -> StreamingResponse:
        """Stream every step the caller may see, one row per step with its episode's outcome.

        An episode is visible when every access group it ran with is one of the caller's groups.
        """
        state = _state(request)
        ponder = state.ready_ponder()
        frame = await state.run("the trace export", _visible_steps, ponder, caller)
        logger.info("trace export for %s: %d steps as %s", caller.user, frame.height, export_format)
        headers = {"Content-Disposition": f'attachment; filename="ponder-steps.{export_format}"', "X-Row-Count": str(frame.height)}
        if export_format == "jsonl":
            return StreamingResponse(_ndjson_chunks(frame), media_type="application/x-ndjson", headers=headers)
        return StreamingResponse(_parquet_chunks(frame), media_type="application/vnd.apache.parquet", headers=headers)

    @app.get(f"{API_PREFIX}/stats", tags=["index"], responses={401: rejected[401], **busy})
    async def stats(request: Request, caller: Caller = Depends(require_caller)) -> dict[str, Any]:
        """Statistics of the loaded index version as the caller's groups see it, and the server's settings."""
        from jobs.inspect import index_stats

        state = _state(request)
        ponder = state.ready_ponder()
        index = await state.run("index statistics", index_stats, state.db, groups=caller.groups, snapshot=ponder.snapshot)
        index.pop("db", None)  # the storage location is the operator's business, not the caller's
        config = state.config
        return {
            "version": _package_version(),
            "caller": {"user": caller.user, "groups": list(caller.groups)},
            "access": "local" if config.local_mode else "api-keys",
            "policies": policy_names(),
            "limits": {
                "max_body_bytes": config.max_body_bytes,
                "max_question_chars": config.max_question_chars,
                "max_budget": config.max_budget,
                "default_budget": config.default_budget,
                "default_policy": config.default_policy,
                "queue_limit": config.queue_limit,
            },
            "index": index,
        }


def _check_ask(body: AskRequest, config: ServeConfig, caller: Caller) -> EpisodeRequest:
    """Apply the server's limits, then the solver's own checks; raise ApiError with the reason."""
    question = body.question
    if not question.strip():
        raise ApiError(422, "question is empty; send a question such as \"Who wrote Hamlet?\"")
    if len(question) > config.max_question_chars:
        raise ApiError(422, f"question has {len(question)} characters; the maximum is {config.max_question_chars}")
    if _CONTROL_CHARACTERS.search(question):
        raise ApiError(422, "question contains control characters (such as NUL or escape); send plain text")
    if not _WORD_CHARACTER.search(question):
        raise ApiError(422, "question contains no letters or digits; send a question in words")

    budget = config.default_budget if body.budget is None else body.budget
    if budget > config.max_budget:
        raise ApiError(422, f"budget must be at most {config.max_budget} tokens on this server, got {budget}")

    policy = config.default_policy if body.policy is None else body.policy
    gold = body.gold
    if gold is not None:
        if len(gold) > config.max_gold_answers:
            raise ApiError(422, f"gold has {len(gold)} answers; the maximum is {config.max_gold_answers}")
        if any(not answer.strip() or len(answer) > MAX_GOLD_CHARS for answer in gold):
            raise ApiError(422, f"every gold answer must be non-empty and at most {MAX_GOLD_CHARS} characters")

    try:
        check_request(question, policy=policy, budget=budget, groups=caller.groups)
    except ValueError as error:  # QueryError is a ValueError too
        raise ApiError(422, str(error)) from None

    options = {}
    if policy == "learned":
        if not config.controller:
            raise ApiError(422, "the learned policy needs a controller model; set controller = PATH in the server's [serve] settings")
        options = {"controller": config.controller}
    return EpisodeRequest(question=question, budget=budget, policy=policy, gold=gold, caller=caller, policy_options=options)


def _run_episode(ponder: Ponder, episode: EpisodeRequest, on_step: Callable | None) -> EpisodeResult:
    result = ponder.ask(
        episode.question,
        policy=episode.policy,
        budget=episode.budget,
        groups=episode.caller.groups,
        gold=episode.gold,
        on_step=on_step,
        user=episode.caller.user,
        policy_options=episode.policy_options,
    )
    logger.info(
        "episode %s for %s (groups %s): policy %s, cost %.0f of %.0f, %d steps, %.0f ms",
        result.episode_id, episode.caller.user, list(result.groups), result.policy, result.cost, result.budget,
        len(result.steps), result.latency_ms,
    )
    return result


def _run_streamed_episode(ponder: Ponder, episode: EpisodeRequest, emit: Callable[[str, dict[str, Any]], None]) -> None:
    """Run an episode on the solver thread, emitting each step, then the result or an error."""
    try:
        result = _run_episode(ponder, episode, lambda step: emit("step", step_to_dict(step)))
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        logger.exception("streamed episode failed (error id %s)", error_id)
        emit("error", {"error": f"internal error while running an episode; error id {error_id}", "error_id": error_id})
        return
    emit("result", result.to_dict())


async def _stream_events(events: asyncio.Queue, future: asyncio.Future) -> AsyncIterator[ServerSentEvent]:
    try:
        while True:
            kind, data = await events.get()
            event_id = str(data["index"]) if kind == "step" else kind
            yield ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=kind, id=event_id)
            if kind != "step":
                return
    finally:
        # A client that leaves before its episode starts frees its place in the queue.
        # NOTE: an episode that has started runs to its end and is still recorded.
        future.cancel()


def _record_feedback(ponder: Ponder, episode_id: str, body: FeedbackRequest, caller: Caller) -> dict[str, Any]:
    traces = _traces(ponder)
    groups = _episode_groups(traces, episode_id)
    if groups is None or not set(groups) <= set(caller.groups):
        raise ApiError(404, f"episode {episode_id} not found")
    return traces.feedback(episode_id, correct=body.correct, answer=body.answer)


def _episode_groups(traces: TraceStore, episode_id: str) -> list[str] | None:
    traces.flush()
    rows = traces.store.open("episodes").search().where(f"episode_id = {quote(episode_id)}").select(["groups"]).limit(1).to_list()
    return list(rows[0]["groups"]) if rows else None


def _visible_steps(ponder: Ponder, caller: Caller) -> pl.DataFrame:
    frame = _traces(ponder).steps_frame()
    allowed = list(caller.groups)
    visible = pl.col("groups").is_not_null() & pl.col("groups").list.eval(pl.element().is_in(allowed)).list.all()
    return frame.filter(visible)


def _traces(ponder: Ponder) -> TraceStore:
    if ponder.traces is None:
        raise ApiError(503, "this server does not record traces")
    return ponder.traces


def _ndjson_chunks(frame: pl.DataFrame) -> Iterator[bytes]:
    for offset in range(0, frame.height, EXPORT_ROWS_PER_CHUNK):
        yield frame.slice(offset, EXPORT_ROWS_PER_CHUNK).write_ndjson().encode("utf-8")


def _parquet_chunks(frame: pl.DataFrame) -> Iterator[bytes]:
    # NOTE: the whole Parquet file is built in memory before it is sent, because its
    # footer is written last. Very large exports need the command-line export instead.
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    view = buffer.getbuffer()
    for offset in range(0, len(view), EXPORT_BYTES_PER_CHUNK):
        yield bytes(view[offset : offset + EXPORT_BYTES_PER_CHUNK])
