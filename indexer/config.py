"""Settings of an indexing run, validated when built."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that indexing cannot use."""


def read_toml_file(path: str | Path, *, hint: str = "") -> dict[str, Any]:
    """Parse the TOML file at ``path``; raises ConfigError when it is missing or invalid.

    ``hint`` is appended to the not-found message, such as which option named the file.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        message = f"config file not found: {path}{hint}"
        raise ConfigError(message) from None
    except IsADirectoryError:
        message = f"config file {path} is a folder; pass the path of a TOML file{hint}"
        raise ConfigError(message) from None
    except (OSError, UnicodeDecodeError) as error:
        message = f"cannot read config file {path}: {error}"
        raise ConfigError(message) from None
    except tomllib.TOMLDecodeError as error:
        message = f"config file {path} is not valid TOML: {error}"
        raise ConfigError(message) from None


@dataclass(frozen=True)
class IndexConfig:
    """How documents are cut, analysed, embedded and written.

    A TOML file with an ``[index]`` table may set any field; see docs/indexing.md.
    """

    chunk_tokens: int = 200
    overlap_tokens: int = 40
    max_document_chars: int = 5_000_000
    default_groups: tuple[str, ...] = ("public",)
    analyzers: int = 0  # spaCy actors; 0 means one per four CPUs, at least one
    embedders: int = 0  # embedding actors; 0 means the CPUs left after the analyzers, at least two
    batch_size: int = 64  # documents per Ray Data batch
    flush_documents: int = 2_000  # documents buffered before a write to LanceDB
    vector_index_min_rows: int = 50_000  # build an ANN index on chunks from this many rows
    object_store_memory: int = 1 << 30  # bytes, for a local Ray instance
    retention_days: int = 30  # table versions older than this are pruned when indexes are optimised
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16 or self.chunk_tokens > 254:
            message = (
                f"chunk_tokens must be between 16 and 254 (the embedder reads 256 tokens, two of them "
                f"special), got {self.chunk_tokens}"
            )
            raise ConfigError(message)
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            message = (
                f"overlap_tokens must be at least 0 and below half of chunk_tokens ({self.chunk_tokens // 2}), "
                f"got {self.overlap_tokens}"
            )
            raise ConfigError(message)
        for name in ("max_document_chars", "batch_size", "flush_documents", "vector_index_min_rows", "object_store_memory", "retention_days"):
            if getattr(self, name) <= 0:
                message = f"{name} must be a positive integer, got {getattr(self, name)!r}"
                raise ConfigError(message)
        for name in ("analyzers", "embedders"):
            if getattr(self, name) < 0:
                message = f"{name} must be 0 (automatic) or a positive number of actors, got {getattr(self, name)}"
                raise ConfigError(message)
        if not self.default_groups or not all(isinstance(group, str) and group for group in self.default_groups):
            message = f"default_groups must be a non-empty list of group names, got {self.default_groups!r}"
            raise ConfigError(message)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> IndexConfig:
        """Read the ``[index]`` table of a TOML file; ``overrides`` win over the file."""
        path = Path(path)
        section = read_toml_file(path).get("index", {})
        known = {item.name for item in fields(cls)} - {"extra"}
        unknown = sorted(set(section) - known)
        if unknown:
            message = f"unknown setting(s) {unknown} in [index] of {path}; known settings: {sorted(known)}"
            raise ConfigError(message)
        values = {**section, **{key: value for key, value in overrides.items() if value is not None}}
        if "default_groups" in values:
            values["default_groups"] = tuple(values["default_groups"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["default_groups"] = list(self.default_groups)
        return data
