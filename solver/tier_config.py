"""Model tiers on OpenAI-compatible chat endpoints: settings, read and validated.

Two tiers can be configured, ``small`` (filtering steps) and ``large`` (synthesis). Each
one is a ``[tiers.NAME]`` table of the TOML settings file given by ``--config`` or named
by ``PONDER_CONFIG``, and every key can be set or overridden by an environment variable
``PONDER_TIER_<NAME>_<KEY>``, such as ``PONDER_TIER_SMALL_BASE_URL``. Environment
variables win over the file. Example::

    [tiers.small]
    base_url = "http://127.0.0.1:11434/v1"
    model = "qwen2.5:3b-instruct"
    price_in = 0.2                 # budget units per input token
    price_out = 0.6                # budget units per output token
    context_tokens = 8192
    timeout_s = 30.0
    retries = 2
    api_key_env = "OPENAI_API_KEY" # optional: the variable that contains the API key

The API key itself never goes in the file; it is read from the variable named by
``api_key_env`` and kept out of ``repr`` and :meth:`TierConfig.to_dict`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from indexer.config import ConfigError, read_toml_file
from solver.state import Tier

CONFIG_ENV = "PONDER_CONFIG"
ENV_PREFIX = "PONDER_TIER_"
TIER_NAMES = ("small", "large")
# Extra output tokens granted for thinking when a reasoning-trained tier sets none.
DEFAULT_REASONING_TOKENS = 512
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REQUIRED = ("base_url", "model", "price_in", "price_out")


@dataclass(frozen=True)
class TierConfig:
    """One model tier: where its endpoint is, what it costs and how calls are retried."""

    name: str
    base_url: str
    model: str
    price_in: float  # budget units per input token reported by the server
    price_out: float  # budget units per output token reported by the server
    context_tokens: int = 8_192  # prompt plus output tokens the model accepts
    reasoning: bool = False  # reasoning-trained: only then are thinking tokens granted
    reasoning_tokens: int = 0  # extra max_tokens for thinking, on a reasoning tier only
    timeout_s: float = 30.0  # per request, for connecting and for each read
    retries: int = 2  # further attempts after a timeout, 429, 5xx or connection error
    backoff_s: float = 0.5  # first retry delay; doubles with each retry, with jitter
    json_mode: bool = True  # ask for response_format {"type": "json_object"}
    api_key_env: str = ""  # environment variable holding the API key; empty for none
    api_key: str = field(default="", repr=False, compare=False)

    def to_tier(self) -> Tier:
        """Return the tier as the solver prices it."""
        return Tier(
            self.name,
            price_in=self.price_in,
            price_out=self.price_out,
            reasoning=self.reasoning,
            context_tokens=self.context_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings without the API key."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "api_key"}


_FIELD_TYPES: dict[str, type] = {
    "base_url": str,
    "model": str,
    "price_in": float,
    "price_out": float,
    "context_tokens": int,
    "reasoning": bool,
    "reasoning_tokens": int,
    "timeout_s": float,
    "retries": int,
    "backoff_s": float,
    "json_mode": bool,
    "api_key_env": str,
}


def load_tier_configs(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, TierConfig]:
    """Read the configured tiers from ``path`` (or ``PONDER_CONFIG``) and the environment.

    Returns an empty mapping when no tier is configured, in which case every reasoning
    step runs on the embedded tier. Raises ``ConfigError`` naming the key and the fix.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = environ[CONFIG_ENV]
    tables = _read_tier_tables(Path(path)) if path else {}
    source = str(path) if path else "the environment"
    configs: dict[str, TierConfig] = {}
    for name in TIER_NAMES:
        values: dict[str, Any] = dict(tables.get(name, {}))
        for key, kind in _FIELD_TYPES.items():
            variable = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
            if variable in environ:
                values[key] = _parse_env_value(variable, environ[variable], kind)
        if not values:
            continue
        configs[name] = _build(name, values, source, environ)
    return configs


def _read_tier_tables(path: Path) -> dict[str, dict[str, Any]]:
    hint = f"; pass an existing file to --config or fix {CONFIG_ENV}"
    tiers = read_toml_file(path, hint=hint).get("tiers", {})
    if not isinstance(tiers, dict):
        message = f"[tiers] in {path} must be a table of tier tables such as [tiers.small]"
        raise ConfigError(message)
    unknown = sorted(set(tiers) - set(TIER_NAMES))
    if unknown:
        message = f"unknown tier(s) {unknown} in {path}; Ponder routes to the tiers {list(TIER_NAMES)}: rename the table"
        raise ConfigError(message)
    for name, table in tiers.items():
        if not isinstance(table, dict):
            message = f"tiers.{name} in {path} must be a table of settings, got {table!r}"
            raise ConfigError(message)
    return tiers


def _parse_env_value(variable: str, text: str, kind: type) -> Any:
    text = text.strip()
    if kind is str:
        return text
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        message = f"{variable} must be true or false, got {text!r}"
        raise ConfigError(message)
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        message = f"{variable} must be {noun}, got {text!r}"
        raise ConfigError(message) from None


def _build(name: str, values: dict[str, Any], source: str, environ: Mapping[str, str]) -> TierConfig:
    prefix = f"tiers.{name}"
    if "api_key" in values:
        message = (
            f"{prefix}.api_key in {source}: API keys are not read from the config file; "
            f'set api_key_env = "OPENAI_API_KEY" (or another variable name) and export the key there'
        )
        raise ConfigError(message)
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        message = f"unknown setting(s) {unknown} in {prefix} of {source}; known settings: {sorted(_FIELD_TYPES)}"
        raise ConfigError(message)
    for key in _REQUIRED:
        if key not in values:
            variable = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
            message = f"{prefix}.{key} is missing in {source}; set it in [{prefix}] or in {variable}"
            raise ConfigError(message)

    for key, value in values.items():
        values[key] = _check_type(f"{prefix}.{key}", value, _FIELD_TYPES[key])
    if values.get("reasoning") and "reasoning_tokens" not in values:
        values["reasoning_tokens"] = DEFAULT_REASONING_TOKENS
    config = TierConfig(name=name, **values)
    _validate(config, prefix)

    api_key = ""
    if config.api_key_env:
        if not _ENV_NAME.match(config.api_key_env):
            message = f"{prefix}.api_key_env must be an environment variable name such as OPENAI_API_KEY, got {config.api_key_env!r}"
            raise ConfigError(message)
        api_key = environ.get(config.api_key_env, "")
        if not api_key:
            message = (
                f"{prefix}.api_key_env names {config.api_key_env}, which is not set; export {config.api_key_env} "
                f"with the API key, or remove api_key_env for a server that needs no key"
            )
            raise ConfigError(message)
    return TierConfig(name=name, **values, api_key=api_key)


def _check_type(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        message = f"{key} must be an integer, got {value!r}"
        raise ConfigError(message)
    if not isinstance(value, kind):
        noun = {str: "a string", float: "a number", int: "an integer", bool: "true or false"}[kind]
        message = f"{key} must be {noun}, got {value!r}"
        raise ConfigError(message)
    return value


def _validate(config: TierConfig, prefix: str) -> None:
    parsed = urlparse(config.base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        message = f"{prefix}.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {config.base_url!r}"
        raise ConfigError(message)
    if not config.model.strip():
        message = f"{prefix}.model must name the served model, such as the name `ollama list` shows"
        raise ConfigError(message)
    for key in ("price_in", "price_out"):
        if getattr(config, key) < 0:
            message = f"{prefix}.{key} must be 0 or more budget units per token, got {getattr(config, key)}"
            raise ConfigError(message)
    if config.context_tokens < 512:
        message = f"{prefix}.context_tokens must be at least 512 (the prompt alone needs about 300), got {config.context_tokens}"
        raise ConfigError(message)
    if config.reasoning_tokens < 0:
        message = f"{prefix}.reasoning_tokens must be 0 or more, got {config.reasoning_tokens}"
        raise ConfigError(message)
    if config.reasoning_tokens and not config.reasoning:
        message = (
            f"{prefix}.reasoning_tokens is {config.reasoning_tokens} but reasoning is false: thinking tokens "
            f"help only a reasoning-trained model; set reasoning = true or remove reasoning_tokens"
        )
        raise ConfigError(message)
    if config.reasoning_tokens >= config.context_tokens // 2:
        message = (
            f"{prefix}.reasoning_tokens ({config.reasoning_tokens}) must be below half of context_tokens "
            f"({config.context_tokens}) so that evidence still fits"
        )
        raise ConfigError(message)
    if config.timeout_s <= 0:
        message = f"{prefix}.timeout_s must be above 0 seconds, got {config.timeout_s}"
        raise ConfigError(message)
    if not 0 <= config.retries <= 10:
        message = f"{prefix}.retries must be between 0 and 10, got {config.retries}"
        raise ConfigError(message)
    if config.backoff_s < 0:
        message = f"{prefix}.backoff_s must be 0 or more seconds, got {config.backoff_s}"
        raise ConfigError(message)
