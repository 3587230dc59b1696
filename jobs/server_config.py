"""Settings of ``ponder serve``: request limits, and API keys mapped to access groups.

Keys come from the ``[serve]`` table of a TOML file, stored as SHA-256 hex digests, and
from the ``PONDER_API_KEYS`` environment variable (for example filled from a Kubernetes
Secret), whose plain keys are hashed when read and then dropped. No key is kept or
logged in plain text. With no key configured the server runs in local mode, where
every caller gets only the ``public`` group.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from indexer.config import ConfigError, read_toml_file
from solver.search import MAX_QUERY_CHARS
from solver.service import DEFAULT_BUDGET, MAX_BUDGET

KEYS_ENV = "PONDER_API_KEYS"
LOCAL_GROUPS = ("public",)
MIN_KEY_CHARS = 16
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest under which an API key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: its digest, a name for logs and traces, and its groups."""

    name: str
    sha256: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Caller:
    """The sender of a request: ``user`` is recorded in traces, and ``groups`` limit what it reads."""

    user: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class ServeConfig:
    """Limits and access settings of the HTTP server; docs/api.md lists them."""

    max_body_bytes: int = 65_536
    max_question_chars: int = MAX_QUERY_CHARS
    max_budget: float = MAX_BUDGET
    default_budget: float = DEFAULT_BUDGET
    default_policy: str = "adaptive"
    # Requests allowed to wait for the solver thread while it runs another one.
    queue_limit: int = 8
    max_gold_answers: int = 20
    # Groups of callers that send no key while keys are configured; empty means 401.
    anonymous_groups: tuple[str, ...] = ()
    # Model file of the learned policy (ponder controller train); empty disables that policy.
    controller: str = ""
    keys: tuple[ApiKey, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_question_chars", "max_budget", "default_budget", "max_gold_answers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                message = f"[serve] {name} must be a positive number, got {value!r}"
                raise ConfigError(message)
        if self.max_question_chars > MAX_QUERY_CHARS:
            message = f"[serve] max_question_chars must be at most {MAX_QUERY_CHARS}, the solver's limit, got {self.max_question_chars}"
            raise ConfigError(message)
        if self.max_budget > MAX_BUDGET:
            message = f"[serve] max_budget must be at most {MAX_BUDGET} tokens, the solver's limit, got {self.max_budget}"
            raise ConfigError(message)
        if self.default_budget > self.max_budget:
            message = f"[serve] default_budget ({self.default_budget}) must not exceed max_budget ({self.max_budget})"
            raise ConfigError(message)
        if isinstance(self.queue_limit, bool) or not isinstance(self.queue_limit, int) or self.queue_limit < 0:
            message = f"[serve] queue_limit must be 0 or a positive integer, got {self.queue_limit!r}"
            raise ConfigError(message)
        _check_groups(self.anonymous_groups, "[serve] anonymous_groups", allow_empty=True)
        if not isinstance(self.controller, str):
            message = f"[serve] controller must be the path of a controller model file, got {self.controller!r}"
            raise ConfigError(message)
        if self.controller:
            from controller.learned import ControllerError, load_controller

            try:
                load_controller(self.controller)
            except ControllerError as error:
                message = f"[serve] controller: {error}"
                raise ConfigError(message) from None
        elif self.default_policy == "learned":
            message = "[serve] default_policy is learned but no controller is set; set controller = PATH to a model from ponder controller train"
            raise ConfigError(message)
        names = [key.name for key in self.keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            message = f"API key names must be unique; repeated: {duplicates}"
            raise ConfigError(message)
        digests = [key.sha256 for key in self.keys]
        if len(set(digests)) != len(digests):
            message = "two configured API keys are the same key; give each client its own key"
            raise ConfigError(message)

    @property
    def local_mode(self) -> bool:
        return not self.keys

    @classmethod
    def load(cls, path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> ServeConfig:
        """Read the ``[serve]`` table of ``path`` (when given) and the keys in ``PONDER_API_KEYS``.

        Other tables of the file, such as ``[index]`` and ``[storage]``, are left to the
        commands that read them.
        """
        section = _read_section(Path(path)) if path is not None else {}
        source = f"[serve] of {path}" if path is not None else "[serve]"
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            message = f"unknown setting(s) {unknown} in {source}; known settings: {sorted(known)}"
            raise ConfigError(message)
        values = dict(section)
        keys = [_key_from_table(entry, source) for entry in _list_of_tables(values.pop("keys", []), f"{source} keys")]
        env_value = (os.environ if environ is None else environ).get(KEYS_ENV, "")
        keys.extend(_keys_from_env(env_value))
        if "anonymous_groups" in values:
            values["anonymous_groups"] = tuple(_check_groups(values["anonymous_groups"], f"{source} anonymous_groups", allow_empty=True))
        return cls(**values, keys=tuple(keys))

    def identify(self, presented_key: str | None) -> Caller | None:
        """Return the caller that a request's key identifies, or None when the key is rejected.

        In local mode every caller is ``local`` with only ``public``, whatever it sends.
        """
        if self.local_mode:
            return Caller("local", LOCAL_GROUPS)
        if presented_key is None:
            return Caller("anonymous", self.anonymous_groups) if self.anonymous_groups else None
        digest = hash_key(presented_key)
        match = None
        # Compare against every key, so the time taken does not tell which one was close.
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                match = key
        if match is None:
            return None
        return Caller(f"key:{match.name}", match.groups)


def _read_section(path: Path) -> dict[str, Any]:
    section = read_toml_file(path).get("serve", {})
    if not isinstance(section, dict):
        message = f"[serve] in {path} must be a table"
        raise ConfigError(message)
    return section


def _list_of_tables(value: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        message = f"{source} must be a list of tables such as [[serve.keys]]"
        raise ConfigError(message)
    return value


def _check_groups(value: Any, source: str, *, allow_empty: bool = False) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        message = f"{source} must be a list of group names, such as [\"public\"], got {value!r}"
        raise ConfigError(message)
    if not value and not allow_empty:
        message = f"{source} must name at least one group, such as \"public\""
        raise ConfigError(message)
    for group in value:
        if not isinstance(group, str) or not group.strip():
            message = f"{source} contains an invalid group name {group!r}; use non-empty strings"
            raise ConfigError(message)
    return [group.strip() for group in value]


def _check_name(value: Any, source: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        message = f"{source}: name must be 1 to 64 letters, digits, '_', '.' or '-', got {value!r}"
        raise ConfigError(message)
    return value


def _key_from_table(entry: dict[str, Any], source: str) -> ApiKey:
    unknown = sorted(set(entry) - {"name", "sha256", "groups"})
    if unknown:
        message = f"unknown field(s) {unknown} in {source} keys; an entry has name, sha256 and groups"
        raise ConfigError(message)
    name = _check_name(entry.get("name"), f"{source} keys")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _DIGEST.match(digest.lower()):
        message = (
            f"{source} key {name!r}: sha256 must be the 64-character hex SHA-256 digest of the key, "
            "for example from: printf %s \"$KEY\" | sha256sum"
        )
        raise ConfigError(message)
    groups = _check_groups(entry.get("groups"), f"{source} key {name!r} groups")
    return ApiKey(name=name, sha256=digest.lower(), groups=tuple(groups))


def _keys_from_env(value: str) -> list[ApiKey]:
    if not value.strip():
        return []
    try:
        entries = json.loads(value)
    except json.JSONDecodeError as error:
        # The message gives only the position, because the text around it may contain a key.
        message = f"{KEYS_ENV} is not valid JSON (at character {error.pos}); expected a list of {{\"name\", \"key\", \"groups\"}} objects"
        raise ConfigError(message) from None
    keys = []
    for entry in _list_of_tables(entries, KEYS_ENV):
        unknown = sorted(set(entry) - {"name", "key", "groups"})
        if unknown:
            message = f"unknown field(s) {unknown} in {KEYS_ENV}; an entry has name, key and groups"
            raise ConfigError(message)
        name = _check_name(entry.get("name"), KEYS_ENV)
        key = entry.get("key")
        if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
            message = (
                f"{KEYS_ENV} key {name!r} must be a string of at least {MIN_KEY_CHARS} characters; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
            raise ConfigError(message)
        groups = _check_groups(entry.get("groups"), f"{KEYS_ENV} key {name!r} groups")
        keys.append(ApiKey(name=name, sha256=hash_key(key), groups=tuple(groups)))
    return keys
