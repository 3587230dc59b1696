"""Arrow schemas of the LanceDB tables that make up an index.

docs/schema.md describes every column. The embedding dimension is part of the schema,
so an index built with one model cannot be silently mixed with another.
"""

from __future__ import annotations

import pyarrow as pa

from indexer.embedding import DIMENSION

GROUPS = pa.list_(pa.string())
TIMESTAMP = pa.timestamp("us", tz="UTC")


def vector_type(dimension: int = DIMENSION) -> pa.DataType:
    return pa.list_(pa.float32(), dimension)


DOCUMENTS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("source", pa.string()),
        ("content_hash", pa.string()),
        ("groups", GROUPS),
        ("metadata", pa.string()),
        ("n_chars", pa.int64()),
        ("n_chunks", pa.int32()),
        ("n_tables", pa.int32()),
        ("updated_at", TIMESTAMP),
        ("run_id", pa.string()),
    ]
)

CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("ordinal", pa.int32()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("n_tokens", pa.int32()),
        ("groups", GROUPS),
        ("vector", vector_type()),
    ]
)

ENTITIES = pa.schema(
    [
        ("entity_id", pa.string()),
        ("key", pa.string()),
        ("name", pa.string()),
        ("label", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("mention_count", pa.int32()),
        ("doc_count", pa.int32()),
        ("groups", GROUPS),
        ("vector", vector_type()),
    ]
)

MENTIONS = pa.schema(
    [
        ("mention_id", pa.string()),
        ("entity_id", pa.string()),
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("surface", pa.string()),
        ("label", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("groups", GROUPS),
    ]
)

RELATIONS = pa.schema(
    [
        ("relation_id", pa.string()),
        ("doc_id", pa.string()),
        ("source_id", pa.string()),
        ("target_id", pa.string()),
        ("label", pa.string()),
        ("weight", pa.int32()),
        ("chunk_id", pa.string()),
        ("sentence", pa.string()),
        ("groups", GROUPS),
    ]
)

ATTRIBUTES = pa.schema(
    [
        ("attribute_id", pa.string()),
        ("doc_id", pa.string()),
        ("entity_id", pa.string()),
        ("entity_name", pa.string()),
        ("attribute", pa.string()),
        ("value", pa.string()),
        ("value_type", pa.string()),
        ("number", pa.float64()),
        ("unit", pa.string()),
        ("date", pa.string()),
        ("chunk_id", pa.string()),
        ("sentence", pa.string()),
        ("groups", GROUPS),
    ]
)

SOURCE_TABLES = pa.schema(
    [
        ("table_id", pa.string()),
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("header_rows", pa.int32()),
        ("columns", pa.list_(pa.string())),
        ("dtypes", pa.list_(pa.string())),
        ("n_rows", pa.int32()),
        ("n_columns", pa.int32()),
        ("rows_json", pa.string()),
        ("groups", GROUPS),
    ]
)

TABLE_CELLS = pa.schema(
    [
        ("cell_id", pa.string()),
        ("table_id", pa.string()),
        ("doc_id", pa.string()),
        ("row_index", pa.int32()),
        ("row_label", pa.string()),
        ("column_index", pa.int32()),
        ("column_name", pa.string()),
        ("raw", pa.string()),
        ("number", pa.float64()),
        ("percent", pa.bool_()),
        ("currency", pa.string()),
        ("groups", GROUPS),
    ]
)

INDEX_RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("version", pa.int64()),
        ("status", pa.string()),
        ("started_at", TIMESTAMP),
        ("finished_at", TIMESTAMP),
        ("corpus", pa.string()),
        ("user", pa.string()),
        ("host", pa.string()),
        ("ray_address", pa.string()),
        ("n_seen", pa.int64()),
        ("n_added", pa.int64()),
        ("n_changed", pa.int64()),
        ("n_deleted", pa.int64()),
        ("n_unchanged", pa.int64()),
        ("n_skipped", pa.int64()),
        ("changes_json", pa.string()),
        ("skipped_json", pa.string()),
        ("warnings_json", pa.string()),
        ("counts_json", pa.string()),
        ("stage_seconds_json", pa.string()),
        ("table_versions_json", pa.string()),
        ("config_json", pa.string()),
        ("embedding_model", pa.string()),
        ("embedding_dimension", pa.int32()),
    ]
)

# Tables whose rows derive from one document each; a document change replaces its rows.
PER_DOCUMENT_TABLES: dict[str, pa.Schema] = {
    "chunks": CHUNKS,
    "mentions": MENTIONS,
    "relations": RELATIONS,
    "attributes": ATTRIBUTES,
    "source_tables": SOURCE_TABLES,
    "table_cells": TABLE_CELLS,
}

# Every table an index version pins; index_runs records the versions of these.
DATA_TABLES: dict[str, pa.Schema] = {
    "documents": DOCUMENTS,
    **PER_DOCUMENT_TABLES,
    "entities": ENTITIES,
}
