"""A client for OpenAI-compatible chat completions (vLLM, Ollama, llama.cpp server, hosted APIs).

Errors, one class per failure mode::

    ChatError
    ├── ChatTimeout          no reply within the tier's timeout_s
    ├── ChatConnectError     the server could not be reached
    ├── ChatRateLimited      429 Too Many Requests
    ├── ChatServerError      5xx
    ├── ChatRejected         any other 4xx, such as an unknown model or a bad key
    └── MalformedReply       a 2xx reply that is not JSON, or lacks choices or usage

Timeouts, connection errors, 429 and 5xx are retried ``retries`` times with exponential
backoff and jitter. A 429 or 5xx reply with a ``Retry-After`` header waits for that
instead. A rejected request or a
malformed reply is not retried, because sending it again gets the same result.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from solver.tier_config import TierConfig

logger = logging.getLogger("ponder.models")

# Maximum Retry-After the client waits for. A longer one ends the call at once.
MAX_RETRY_AFTER_S = 60.0
# Maximum backoff between two attempts, before jitter.
MAX_BACKOFF_S = 20.0


class ChatError(RuntimeError):
    """A chat completion that failed.

    ``attempts`` counts the requests sent, and ``retry_after`` is the delay in seconds
    that a 429 or 5xx reply requested in its Retry-After header, if any.
    """

    kind = "error"

    def __init__(self, message: str, *, attempts: int = 1, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retry_after = retry_after


class ChatTimeout(ChatError):
    kind = "timeout"


class ChatConnectError(ChatError):
    kind = "connect"


class ChatRateLimited(ChatError):
    kind = "rate_limited"


class ChatServerError(ChatError):
    kind = "server_error"


class ChatRejected(ChatError):
    kind = "rejected"


class MalformedReply(ChatError):
    kind = "malformed"


_RETRYABLE = (ChatTimeout, ChatConnectError, ChatRateLimited, ChatServerError)


@dataclass
class ChatReply:
    """The first choice of a chat completion and the tokens the server reported."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str
    attempts: int = 1
    waits: list[float] = field(default_factory=list)  # seconds slept before each retry


class ChatClient:
    """Send chat completions to one tier's endpoint, with its timeout and retry settings."""

    def __init__(
        self,
        config: TierConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(timeout=httpx.Timeout(config.timeout_s), headers=headers, transport=transport)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0) -> ChatReply:
        """Return the reply to ``messages``, writing at most ``max_tokens`` tokens.

        Raises a ``ChatError`` subclass once the retries are spent or at once for an
        error that retrying cannot fix.
        """
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        attempts = 1 + self.config.retries
        waits: list[float] = []
        for attempt in range(1, attempts + 1):
            try:
                reply = self._send(body)
            except _RETRYABLE as error:
                error.attempts = attempt
                if attempt == attempts:
                    if attempts > 1:
                        error.args = (f"{error.args[0]} (gave up after {attempt} attempts)",)
                    raise
                wait = self._wait_before_retry(error, attempt)
                logger.warning("%s; retry %d of %d in %.2f s", error, attempt, attempts - 1, wait)
                waits.append(wait)
                self._sleep(wait)
                continue
            except ChatError as error:
                error.attempts = attempt
                raise
            reply.attempts = attempt
            reply.waits = waits
            return reply
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def _wait_before_retry(self, error: ChatError, attempt: int) -> float:
        if error.retry_after is not None:
            return error.retry_after
        # Exponential backoff with equal jitter: half fixed, half random, so that
        # clients that failed together do not retry together.
        delay = min(MAX_BACKOFF_S, self.config.backoff_s * 2 ** (attempt - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _send(self, body: dict[str, Any]) -> ChatReply:
        name = self.config.name
        try:
            response = self._http.post(self.url, json=body)
        except httpx.TimeoutException:
            message = f"{name} tier: request to {self.url} timed out after {self.config.timeout_s:g} s"
            raise ChatTimeout(message) from None
        except httpx.TransportError as error:
            message = f"{name} tier: cannot reach {self.url}: {type(error).__name__}: {error}"
            raise ChatConnectError(message) from None
        status = response.status_code
        retry_after = None
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                message = (
                    f"{name} tier: server replied {status} and asked to retry after {retry_after:.0f} s, "
                    f"beyond the {MAX_RETRY_AFTER_S:.0f} s the client waits"
                )
                raise ChatError(message)
        if status == 429:
            raise ChatRateLimited(f"{name} tier: rate limited (429)", retry_after=retry_after)
        if status >= 500:
            message = f"{name} tier: server error {status}: {_snippet(response.text)}"
            raise ChatServerError(message, retry_after=retry_after)
        if status >= 400:
            message = f"{name} tier: request rejected with {status}: {_snippet(response.text)}"
            raise ChatRejected(message)
        return parse_reply(response, name)


def parse_reply(response: httpx.Response, tier: str) -> ChatReply:
    """Read the first choice and the usage of a chat completion, or raise MalformedReply."""
    try:
        data = response.json()
    except ValueError:
        raise MalformedReply(f"{tier} tier: reply is not JSON: {_snippet(response.text)}") from None
    if not isinstance(data, dict):
        raise MalformedReply(f"{tier} tier: reply is JSON but not an object: {_snippet(response.text)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedReply(f"{tier} tier: reply has no choices")

    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise MalformedReply(f"{tier} tier: reply's first choice has no message content")

    usage = data.get("usage")
    if not isinstance(usage, dict):
        raise MalformedReply(f"{tier} tier: reply has no usage, so its cost cannot be charged; enable usage reporting on the server")
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedReply(f"{tier} tier: reply's usage.{key} is {value!r}, not a token count")
        counts.append(value)
    return ChatReply(
        content=content,
        prompt_tokens=counts[0],
        completion_tokens=counts[1],
        model=str(data.get("model", "")),
        finish_reason=str(choices[0].get("finish_reason") or ""),
    )


def parse_retry_after(value: str | None) -> float | None:
    """Return the delay in seconds that a Retry-After header requests: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
