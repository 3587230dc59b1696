"""A deterministic OpenAI-compatible chat-completions server for tests, on 127.0.0.1.

Run ``python -m tests.fake_openai --port 0``; it prints ``listening on URL`` once ready.
``POST /v1/chat/completions`` reads the task, the question and the evidence block of a
Ponder prompt and replies with the JSON object the task requests: the evidence sentence
that shares the most words with the question supplies the answer span (its longest
capitalised phrase that the question does not contain) and its evidence id. Usage is
reported as 1.3 tokens per whitespace-separated word.

Suffixes on the requested model name change the behaviour, e.g. ``small+slow``:

- ``slow``: sleep 5 s before replying, past any short client timeout.
- ``malformed``: reply 200 with a body that is not JSON.
- ``nochoices`` / ``nousage``: a JSON reply without ``choices`` / without ``usage``.
- ``429``: every odd-numbered request gets 429 with ``Retry-After: 1``.
- ``busy``: every request gets 429 with ``Retry-After: 0``.
- ``flaky``: every odd-numbered request gets 503 without Retry-After.
- ``down``: every request gets 503.
- ``overreport``: report 100 times the usage.
- ``obedient``: when an evidence passage says to ignore previous instructions, reply
  with that passage's text as plain text, as a model that follows it would.

``GET /requests`` returns every chat request received: model, task, max_tokens, the
messages, and the SHA-256 of the Authorization header (never the header itself).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_STOPWORDS = set(
    "a an the of in on at to for by with from and or is was were are be been who whom whose which what when "
    "where how did does do that this as it its his her their than then".split()
)
_CAPITALISED = re.compile(r"[A-Z][\w'’-]*(?:\s+(?:of|the|and|de|von|van)?\s*[A-Z][\w'’-]*)*")
_INJECTION = re.compile(r"ignore (all )?(previous|prior|above) instructions", re.IGNORECASE)
_BLOCK = re.compile(r"<<<DATA (\w+)>>>\n(.*?)\n<<<END DATA \1>>>", re.DOTALL)


class FakeState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.counts: dict[str, int] = {}


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in _STOPWORDS}


def _parse_prompt(messages: list[dict]) -> tuple[str, str, list[dict], str]:
    user = next((message["content"] for message in messages if message.get("role") == "user"), "")
    task = re.search(r"^TASK: (\w+)", user, re.MULTILINE)
    question = re.search(r"^QUESTION: (.*)$", user, re.MULTILINE)
    evidence: list[dict] = []
    candidate = ""
    block = _BLOCK.search(user)
    if block:
        for line in block.group(2).splitlines():
            item = json.loads(line)
            if "candidate" in item:
                candidate = item["candidate"]
            else:
                evidence.append(item)
    return (task.group(1) if task else ""), (question.group(1) if question else ""), evidence, candidate


def _best_sentence(question: str, evidence: list[dict]) -> tuple[str, str]:
    question_words = _words(question)
    best = ("", "", -1)
    for item in evidence:
        for sentence in re.split(r"(?<=[.!?])\s+", item["text"]):
            overlap = len(question_words & _words(sentence + " " + item["title"]))
            if overlap > best[2]:
                best = (item["id"], sentence, overlap)
    return best[0], best[1]


def _span(question: str, sentence: str) -> str:
    question_words = _words(question)
    phrases = [phrase for phrase in _CAPITALISED.findall(sentence) if not _words(phrase) <= question_words]
    if not phrases:
        return ""
    return max(phrases, key=lambda phrase: (len(phrase.split()), -sentence.find(phrase)))


def answer(task: str, question: str, evidence: list[dict], candidate: str) -> dict:
    """Return the JSON object a Ponder task requests, computed from the evidence."""
    if task == "decompose":
        return {"sub_questions": [question]}
    evidence_id, sentence = _best_sentence(question, evidence)
    span = _span(question, sentence)
    if task == "bridge":
        bridges = [{"entity": span, "citations": [evidence_id], "follow_up_query": f"{question} {span}"}] if span else []
        return {"bridges": bridges}
    if task == "verify":
        cited = [item["id"] for item in evidence if candidate and candidate.lower() in item["text"].lower()]
        return {"supported": bool(cited), "citations": cited}
    return {"answer": span, "citations": [evidence_id] if span else [], "confidence": 0.8 if span else 0.0}


def make_handler(state: FakeState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class names it so
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/requests":
                self._send(404, b'{"error": "not found"}')
                return
            with state.lock:
                body = json.dumps(state.requests).encode()
            self._send(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length))
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": "not found"}')
                return
            model = request.get("model", "")
            modes = set(model.split("+")[1:])
            messages = request.get("messages", [])
            task, question, evidence, candidate = _parse_prompt(messages)
            authorization = self.headers.get("Authorization", "")
            with state.lock:
                state.counts[model] = state.counts.get(model, 0) + 1
                number = state.counts[model]
                state.requests.append(
                    {
                        "model": model,
                        "task": task,
                        "max_tokens": request.get("max_tokens"),
                        "messages": messages,
                        "auth_sha256": hashlib.sha256(authorization.encode()).hexdigest() if authorization else "",
                    }
                )
            if "slow" in modes:
                time.sleep(5.0)
            if "429" in modes and number % 2 == 1:
                self._send(429, b'{"error": "rate limited"}', {"Retry-After": "1"})
                return
            if "busy" in modes:
                self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
                return
            if "down" in modes or ("flaky" in modes and number % 2 == 1):
                self._send(503, b'{"error": "model is loading"}')
                return
            if "malformed" in modes:
                self._send(200, b"<html>upstream proxy error</html>")
                return

            injected = next((item["text"] for item in evidence if _INJECTION.search(item["text"])), None)
            if "obedient" in modes and injected is not None:
                content = injected
            else:
                content = json.dumps(answer(task, question, evidence, candidate))
            words_in = sum(len(str(message.get("content", "")).split()) for message in messages)
            usage = {"prompt_tokens": math.ceil(1.3 * words_in), "completion_tokens": math.ceil(1.3 * len(content.split()))}
            if "overreport" in modes:
                usage = {key: value * 100 for key, value in usage.items()}
            reply: dict = {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {**usage, "total_tokens": sum(usage.values())},
            }
            if "nochoices" in modes:
                del reply["choices"]
            if "nousage" in modes:
                del reply["usage"]
            self._send(200, json.dumps(reply).encode())

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one.")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(FakeState()))
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
