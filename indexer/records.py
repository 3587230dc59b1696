"""Plain records passed between the reading, analysis and writing stages of indexing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

DEFAULT_GROUPS = ("public",)


def stable_hash(*parts: str, length: int = 16) -> str:
    """Hex digest of the parts joined by a unit separator, truncated to ``length``."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


@dataclass
class SourceTable:
    """A table found in a document, as raw cell strings, row by row."""

    table_id: str
    title: str
    rows: list[list[str]]


@dataclass
class Document:
    """One corpus document after reading and decoding.

    ``content_hash`` covers everything that indexing reads (title, text, groups,
    metadata and tables), so a change to any of them re-processes the document.
    """

    doc_id: str
    title: str
    text: str
    source: str
    groups: list[str] = field(default_factory=lambda: list(DEFAULT_GROUPS))
    metadata: dict = field(default_factory=dict)
    tables: list[SourceTable] = field(default_factory=list)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.groups:
            message = f"document {self.doc_id!r} has no access groups; give at least one, such as 'public'"
            raise ValueError(message)
        self.groups = sorted(set(self.groups))
        if not self.content_hash:
            self.content_hash = self.compute_hash()

    def compute_hash(self) -> str:
        payload = json.dumps(
            {
                "title": self.title,
                "text": self.text,
                "groups": self.groups,
                "metadata": self.metadata,
                "tables": [[table.title, table.rows] for table in self.tables],
            },
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Skipped:
    """A file or record that was not indexed, with the reason a user can act on."""

    source: str
    reason: str


@dataclass
class CorpusScan:
    """The result of reading a corpus: documents to index and inputs that were skipped."""

    documents: list[Document]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ChunkRecord:
    """A span of a document's text, cut on sentence boundaries."""

    chunk_id: str  # f"{doc_id}#c{ordinal}"
    doc_id: str
    ordinal: int
    text: str
    start: int  # character offsets into Document.text
    end: int
    n_tokens: int  # embedding-model tokens, without special tokens


@dataclass
class MentionRecord:
    """One occurrence of an entity in a chunk."""

    entity_key: str  # indexer.normalize.entity_key of the canonical name
    surface: str  # the text as written
    label: str  # spaCy label (PERSON, GPE, ...), "TITLE" or "NOUN_PHRASE"
    chunk_id: str
    start: int  # character offsets into Document.text
    end: int


@dataclass
class RelationRecord:
    """Two entities that share a sentence, with the verb or preposition joining them."""

    source_key: str
    target_key: str
    label: str  # verb lemma, preposition, "verb prep" such as "bear in", or "related_to"
    chunk_id: str
    sentence: str


@dataclass
class AttributeRecord:
    """A fact the text states plainly about one entity."""

    entity_key: str
    entity_name: str
    attribute: str  # birth_date, death_date, founded, location, nationality, type, or a measured noun
    value: str  # the value as written
    value_type: str  # "date", "place", "number", "text"
    chunk_id: str
    sentence: str
    number: float | None = None
    unit: str | None = None
    date: str | None = None  # ISO 8601, as precise as the text: "1928", "1928-04", "1928-04-23"


@dataclass
class Analysis:
    """Everything extracted from one document."""

    doc_id: str
    chunks: list[ChunkRecord]
    mentions: list[MentionRecord]
    relations: list[RelationRecord]
    attributes: list[AttributeRecord]
    entity_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (display name, label)
