"""Turning analysed documents into LanceDB rows, and keeping derived tables in step."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from indexer import faults
from indexer.config import IndexConfig
from indexer.normalize import entity_id
from indexer.records import Analysis, Document, stable_hash
from indexer.schema import (
    ATTRIBUTES,
    CHUNKS,
    DOCUMENTS,
    ENTITIES,
    MENTIONS,
    RELATIONS,
    SOURCE_TABLES,
    TABLE_CELLS,
)
from indexer.store import IndexStore, in_filter

logger = logging.getLogger("ponder.writer")

__all__ = [
    "build_rows",
    "entity_id",
    "entity_ids_of_documents",
    "refresh_entities",
    "refresh_indexes",
    "vector_problem",
]

_MAX_ALIASES = 12
# Labels that name the entity better than others when mentions disagree.
_LABEL_PRIORITY = {"TITLE": 3, "PERSON": 2, "ORG": 2, "GPE": 2, "LOC": 2, "WORK_OF_ART": 2, "NOUN_PHRASE": 0}


def build_rows(results: list[tuple], run_id: str) -> dict[str, pa.Table]:
    """Build one Arrow table per index table from analysed, embedded documents."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    vectors: list[np.ndarray] = []
    now = datetime.now(UTC)
    for document, analysis, typed_tables, chunk_vectors, _ in results:
        _document_rows(document, analysis, typed_tables, now, run_id, rows)
        vectors.append(np.asarray(chunk_vectors, dtype=np.float32).reshape(len(analysis.chunks), -1))

    chunk_table = pa.Table.from_pylist(rows["chunks"], schema=CHUNKS.remove(CHUNKS.get_field_index("vector")))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, CHUNKS.field("vector").type.list_size), np.float32)
    _check_vectors(matrix, rows["chunks"])
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    vector_column = pa.FixedSizeListArray.from_arrays(flat, CHUNKS.field("vector").type.list_size)
    chunk_table = chunk_table.append_column(CHUNKS.field("vector"), vector_column)
    return {
        "documents": pa.Table.from_pylist(rows["documents"], schema=DOCUMENTS),
        "chunks": chunk_table,
        "mentions": pa.Table.from_pylist(rows["mentions"], schema=MENTIONS),
        "relations": pa.Table.from_pylist(rows["relations"], schema=RELATIONS),
        "attributes": pa.Table.from_pylist(rows["attributes"], schema=ATTRIBUTES),
        "source_tables": pa.Table.from_pylist(rows["source_tables"], schema=SOURCE_TABLES),
        "table_cells": pa.Table.from_pylist(rows["table_cells"], schema=TABLE_CELLS),
    }


def vector_problem(analysis: Analysis, chunk_vectors: Any, entity_vectors: dict[str, Any]) -> str | None:
    """Describe what is wrong with one document's embeddings, or return None when nothing is.

    A vector is unusable when it is missing, has the wrong length, contains NaN or infinity,
    or is all zeros (the embedder returns unit-length vectors).
    """
    dimension = CHUNKS.field("vector").type.list_size
    matrix = np.asarray(chunk_vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(analysis.chunks) or (matrix.size and matrix.shape[1] != dimension):
        return (
            f"embedding returned {matrix.shape[0] if matrix.ndim else 0} vectors of shape {matrix.shape} "
            f"for {len(analysis.chunks)} chunks; expected {dimension} dimensions per chunk"
        )
    bad_chunks = int(_bad_rows(matrix).sum()) if matrix.size else 0
    if bad_chunks:
        return f"embedding returned empty or non-finite (NaN or infinite) vectors for {bad_chunks} of {len(analysis.chunks)} chunks"
    bad_names = []
    for key, (name, _) in analysis.entity_names.items():
        vector = np.asarray(entity_vectors.get(key, ()), dtype=np.float32).reshape(-1)
        if vector.shape != (dimension,) or _bad_rows(vector[None, :])[0]:
            bad_names.append(name)
    if bad_names:
        return f"embedding returned empty or non-finite vectors for the entity names {sorted(bad_names)[:5]}"
    return None


def _bad_rows(matrix: np.ndarray) -> np.ndarray:
    return ~np.isfinite(matrix).all(axis=1) | (np.abs(matrix).sum(axis=1) == 0)


def _check_vectors(matrix: np.ndarray, chunks: list[dict[str, Any]]) -> None:
    if matrix.shape[0] != len(chunks):
        message = f"embedding stage returned {matrix.shape[0]} vectors for {len(chunks)} chunks"
        raise RuntimeError(message)
    bad = _bad_rows(matrix)
    if bad.any():
        ids = [chunks[i]["chunk_id"] for i in np.flatnonzero(bad)[:5]]
        message = f"embedding model returned empty or non-finite vectors for chunks {ids}"
        raise RuntimeError(message)


def _document_rows(
    document: Document,
    analysis: Analysis,
    typed_tables: list,
    now: datetime,
    run_id: str,
    rows: dict[str, list[dict[str, Any]]],
) -> None:
    from indexer.tables import table_cell_rows

    doc_id = document.doc_id
    groups = list(document.groups)
    rows["documents"].append(
        {
            "doc_id": doc_id,
            "title": document.title,
            "source": document.source,
            "content_hash": document.content_hash,
            "groups": groups,
            "metadata": json.dumps(document.metadata, ensure_ascii=False, sort_keys=True, default=str),
            "n_chars": len(document.text),
            "n_chunks": len(analysis.chunks),
            "n_tables": len(document.tables),
            "updated_at": now,
            "run_id": run_id,
        }
    )
    for chunk in analysis.chunks:
        rows["chunks"].append(
            {
                "chunk_id": chunk.chunk_id,
                "doc_id": doc_id,
                "ordinal": chunk.ordinal,
                "title": document.title,
                "text": chunk.text,
                "start": chunk.start,
                "end": chunk.end,
                "n_tokens": chunk.n_tokens,
                "groups": groups,
            }
        )
    for mention in analysis.mentions:
        rows["mentions"].append(
            {
                "mention_id": stable_hash(mention.chunk_id, str(mention.start), mention.entity_key),
                "entity_id": entity_id(mention.entity_key),
                "chunk_id": mention.chunk_id,
                "doc_id": doc_id,
                "surface": mention.surface,
                "label": mention.label,
                "start": mention.start,
                "end": mention.end,
                "groups": groups,
            }
        )
    _relation_rows(doc_id, analysis, groups, rows["relations"])
    for attribute in analysis.attributes:
        rows["attributes"].append(
            {
                "attribute_id": stable_hash(attribute.chunk_id, attribute.entity_key, attribute.attribute, attribute.value),
                "doc_id": doc_id,
                "entity_id": entity_id(attribute.entity_key),
                "entity_name": attribute.entity_name,
                "attribute": attribute.attribute,
                "value": attribute.value,
                "value_type": attribute.value_type,
                "number": attribute.number,
                "unit": attribute.unit,
                "date": attribute.date,
                "chunk_id": attribute.chunk_id,
                "sentence": attribute.sentence,
                "groups": groups,
            }
        )
    for raw, typed in zip(document.tables, typed_tables, strict=True):
        rows["source_tables"].append(
            {
                "table_id": raw.table_id,
                "doc_id": doc_id,
                "title": raw.title or document.title,
                "header_rows": typed.header_rows,
                "columns": list(typed.columns),
                "dtypes": [str(dtype) for dtype in typed.dtypes],
                "n_rows": typed.frame.height,
                "n_columns": len(typed.columns),
                "rows_json": json.dumps(raw.rows, ensure_ascii=False),
                "groups": groups,
            }
        )
        for cell in table_cell_rows(doc_id, typed, raw):
            cell = dict(cell)
            cell["cell_id"] = f"{cell['table_id']}:{cell['row_index']}:{cell['column_index']}"
            cell["groups"] = groups
            rows["table_cells"].append(cell)


def _relation_rows(doc_id: str, analysis: Analysis, groups: list[str], out: list[dict[str, Any]]) -> None:
    """Sum a document's relation occurrences into one weighted row per (source, target, label)."""
    weights: Counter[tuple[str, str, str]] = Counter()
    evidence: dict[tuple[str, str, str], tuple[str, str]] = {}
    for relation in analysis.relations:
        key = (relation.source_key, relation.target_key, relation.label)
        weights[key] += 1
        evidence.setdefault(key, (relation.chunk_id, relation.sentence))
    for (source, target, label), weight in weights.items():
        chunk_id, sentence = evidence[(source, target, label)]
        out.append(
            {
                "relation_id": stable_hash(doc_id, source, target, label),
                "doc_id": doc_id,
                "source_id": entity_id(source),
                "target_id": entity_id(target),
                "label": label,
                "weight": weight,
                "chunk_id": chunk_id,
                "sentence": sentence,
                "groups": groups,
            }
        )


def entity_ids_of_documents(store: IndexStore, doc_ids: list[str]) -> set[str]:
    """Entities mentioned by these documents, read before their rows are deleted."""
    if not doc_ids:
        return set()
    table = store.open("mentions")
    found: set[str] = set()
    for start in range(0, len(doc_ids), 400):
        batch = table.search().where(in_filter("doc_id", doc_ids[start : start + 400])).select(["entity_id"])
        found.update(batch.to_arrow()["entity_id"].to_pylist())
    return found


def refresh_entities(
    store: IndexStore,
    touched: set[str],
    new_vectors: dict[str, np.ndarray],
    new_names: dict[str, tuple[str, str]],
) -> int:
    """Recompute the entity rows for ``touched`` ids from the mentions table.

    Entities left with no mention are removed. Vectors come from this run's embedding
    stage, else from the existing row, else are embedded here.
    """
    if not touched:
        return 0
    entities = store.open("entities")
    mentions = pl.from_arrow(store.open("mentions").to_arrow().select(["entity_id", "doc_id", "surface", "label", "groups"]))
    touched_frame = pl.DataFrame({"entity_id": sorted(touched)})
    relevant = mentions.join(touched_frame, on="entity_id", how="semi")
    aggregated = _aggregate_entities(relevant)

    existing = pl.from_arrow(entities.to_arrow().select(["entity_id", "key", "name", "vector"]))
    existing = existing.join(touched_frame, on="entity_id", how="semi")
    old_vectors = dict(zip(existing["entity_id"].to_list(), existing["vector"].to_list(), strict=True))
    old_keys = dict(zip(existing["entity_id"].to_list(), existing["key"].to_list(), strict=True))

    rows = []
    missing_vectors: list[int] = []
    for record in aggregated.iter_rows(named=True):
        ident = record["entity_id"]
        name, label = new_names.get(ident, (record["name"], record["label"]))
        vector = new_vectors.get(ident)
        if vector is None:
            vector = old_vectors.get(ident)
        if vector is None:
            missing_vectors.append(len(rows))
        rows.append(
            {
                "entity_id": ident,
                "key": old_keys.get(ident) or _key_of(name),
                "name": record["name"] or name,
                "label": record["label"] or label,
                "aliases": record["aliases"][:_MAX_ALIASES],
                "mention_count": record["mention_count"],
                "doc_count": record["doc_count"],
                "groups": record["groups"],
                "vector": vector,
            }
        )
    if missing_vectors:
        from indexer.embedding import Embedder

        embedded = Embedder().embed([rows[i]["name"] for i in missing_vectors])
        for i, vector in zip(missing_vectors, embedded, strict=True):
            rows[i]["vector"] = vector
    for row in rows:
        row["vector"] = np.asarray(row["vector"], dtype=np.float32).tolist()

    kept = {row["entity_id"] for row in rows}
    removed = sorted(touched - kept)
    if rows:
        faults.reach("entities")
        (
            entities.merge_insert("entity_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(pa.Table.from_pylist(rows, schema=ENTITIES))
        )
    for start in range(0, len(removed), 400):
        faults.reach("entities")
        entities.delete(in_filter("entity_id", removed[start : start + 400]))
    return len(rows) + len(removed)


def _key_of(name: str) -> str:
    from indexer.normalize import entity_key

    return entity_key(name)


def _aggregate_entities(mentions: pl.DataFrame) -> pl.DataFrame:
    """One row per entity: most frequent surface as name, best label, aliases, counts, groups."""
    if mentions.is_empty():
        return pl.DataFrame(
            schema={
                "entity_id": pl.String,
                "name": pl.String,
                "label": pl.String,
                "aliases": pl.List(pl.String),
                "mention_count": pl.Int32,
                "doc_count": pl.Int32,
                "groups": pl.List(pl.String),
            }
        )
    # "the United States" and "United States" share a key; show the form without the article.
    surfaces = (
        mentions.with_columns(pl.col("surface").str.replace(r"^the\s+", ""))
        .group_by("entity_id", "surface")
        .len()
        .sort(["entity_id", "len", "surface"], descending=[False, True, False])
        .group_by("entity_id", maintain_order=True)
        .agg(pl.col("surface").first().alias("name"), pl.col("surface").alias("aliases"))
    )
    labels = (
        mentions.with_columns(
            pl.col("label").replace_strict(_LABEL_PRIORITY, default=1, return_dtype=pl.Int32).alias("priority")
        )
        .group_by("entity_id", "label")
        .agg(pl.len().alias("count"), pl.col("priority").first())
        .sort(["entity_id", "priority", "count", "label"], descending=[False, True, True, False])
        .group_by("entity_id", maintain_order=True)
        .agg(pl.col("label").first())
    )
    counts = mentions.group_by("entity_id").agg(
        pl.len().cast(pl.Int32).alias("mention_count"),
        pl.col("doc_id").n_unique().cast(pl.Int32).alias("doc_count"),
        pl.col("groups").list.explode(keep_nulls=False, empty_as_null=False).unique().sort().alias("groups"),
    )
    return counts.join(surfaces, on="entity_id").join(labels, on="entity_id").sort("entity_id")


def refresh_indexes(store: IndexStore, config: IndexConfig) -> None:
    """Create the full-text and vector indexes when missing, else fold new rows into them."""
    from lancedb.index import FTS, BTree, HnswSq

    chunks = store.open("chunks")
    indexed_columns = {tuple(index.columns) for index in chunks.list_indices()}
    faults.reach("indexes")
    if ("text",) not in indexed_columns:
        chunks.create_index("text", config=FTS(with_position=True))
    else:
        chunks.optimize(cleanup_older_than=timedelta(days=config.retention_days))
    if ("doc_id",) not in indexed_columns:
        faults.reach("indexes")
        chunks.create_index("doc_id", config=BTree())
    if ("vector",) not in indexed_columns and chunks.count_rows() >= config.vector_index_min_rows:
        faults.reach("indexes")
        chunks.create_index("vector", config=HnswSq(distance_type="cosine"))

    entities = store.open("entities")
    if ("name",) not in {tuple(index.columns) for index in entities.list_indices()} and entities.count_rows():
        faults.reach("indexes")
        entities.create_index("name", config=FTS(with_position=False))
    elif entities.count_rows():
        faults.reach("indexes")
        entities.optimize(cleanup_older_than=timedelta(days=config.retention_days))
