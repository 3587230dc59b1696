"""Read-only views of an index: statistics and graph export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import polars as pl

from indexer.schema import DATA_TABLES
from indexer.store import Snapshot, StoreError
from solver.search import groups_filter


def index_stats(
    db: str, *, top: int = 10, groups: Sequence[str] | None = None, snapshot: Snapshot | None = None
) -> dict[str, Any]:
    """Row counts, label distributions and the most mentioned entities of the current version.

    With ``groups``, only rows that one of those access groups may read are counted and
    named. ``snapshot`` reads that pinned version instead of the newest one.
    """
    snapshot = snapshot if snapshot is not None else Snapshot.open(db)
    where = None if groups is None else groups_filter(groups)
    rows = {name: snapshot.table(name).count_rows(where) for name in DATA_TABLES}
    entities = _visible(snapshot, "entities", ["entity_id", "name", "label", "mention_count", "doc_count"], groups)
    if groups is not None:
        # An entity's stored counts include mentions in documents these groups may not
        # read, so they are recounted from the visible mentions.
        mentions = _visible(snapshot, "mentions", ["entity_id", "doc_id"], groups)
        counts = mentions.group_by("entity_id").agg(
            pl.len().alias("mention_count").cast(pl.Int64), pl.col("doc_id").n_unique().alias("doc_count").cast(pl.Int64)
        )
        entities = entities.drop("mention_count", "doc_count").join(counts, on="entity_id", how="inner")
    entities = entities.drop("entity_id")
    relations = _visible(snapshot, "relations", ["label", "weight"], groups)
    entity_labels = (
        dict(entities.group_by("label").len().sort("len", descending=True).iter_rows()) if entities.height else {}
    )
    relation_labels = (
        dict(
            relations.group_by("label").agg(pl.col("weight").sum()).sort("weight", descending=True).head(top).iter_rows()
        )
        if relations.height
        else {}
    )
    top_entities = entities.sort(["mention_count", "name"], descending=[True, False]).head(top).to_dicts()
    run = snapshot.run.row
    return {
        "db": db,
        "version": snapshot.version,
        "run_id": snapshot.run.run_id,
        "finished_at": str(run["finished_at"]),
        "rows": rows,
        "entity_labels": entity_labels,
        "relation_labels": relation_labels,
        "top_entities": top_entities,
        "embedding_model": run["embedding_model"],
    }


def _visible(snapshot: Snapshot, name: str, columns: list[str], groups: Sequence[str] | None) -> pl.DataFrame:
    if groups is None:
        return pl.from_arrow(snapshot.arrow(name, columns))
    frame = pl.from_arrow(snapshot.arrow(name, [*columns, "groups"]))
    return frame.filter(pl.col("groups").list.set_intersection(list(groups)).list.len() > 0).select(columns)


def build_entity_graph(
    snapshot: Snapshot, groups: Sequence[str], *, with_chunks: bool = False
) -> nx.MultiDiGraph:
    """Build a networkx graph of the entities and relations the groups may read."""
    allowed = set(groups)
    graph = nx.MultiDiGraph()
    entities = snapshot.arrow("entities", ["entity_id", "name", "label", "mention_count", "groups"]).to_pylist()
    visible = set()
    for row in entities:
        if allowed.intersection(row["groups"]):
            visible.add(row["entity_id"])
            graph.add_node(row["entity_id"], kind="entity", name=row["name"], label=row["label"], mentions=row["mention_count"])
    for row in snapshot.arrow("relations", ["source_id", "target_id", "label", "weight", "chunk_id", "groups"]).to_pylist():
        if allowed.intersection(row["groups"]) and row["source_id"] in visible and row["target_id"] in visible:
            graph.add_edge(row["source_id"], row["target_id"], kind="relation", label=row["label"], weight=row["weight"], chunk_id=row["chunk_id"])
    if with_chunks:
        for row in snapshot.arrow("mentions", ["entity_id", "chunk_id", "doc_id", "groups"]).to_pylist():
            if allowed.intersection(row["groups"]) and row["entity_id"] in visible:
                if row["chunk_id"] not in graph:
                    graph.add_node(row["chunk_id"], kind="chunk", name=row["chunk_id"], label="CHUNK", mentions=0)
                graph.add_edge(row["entity_id"], row["chunk_id"], kind="mention", label="mentioned_in", weight=1, chunk_id=row["chunk_id"])
    return graph


def export_graph(
    db: str, out: Path, *, export_format: str = "graphml", groups: Sequence[str] = ("public",), with_chunks: bool = False
) -> tuple[int, int]:
    """Write the graph to ``out``; returns the node and edge counts."""
    if export_format not in {"graphml", "edgelist"}:
        message = f"unknown graph format {export_format!r}; use graphml or edgelist"
        raise StoreError(message)
    graph = build_entity_graph(Snapshot.open(db), groups, with_chunks=with_chunks)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if export_format == "graphml":
        nx.write_graphml(graph, out)
    else:
        with out.open("w", encoding="utf-8") as handle:
            for source, target, data in graph.edges(data=True):
                handle.write(f"{source}\t{target}\t{data['label']}\t{data['weight']}\n")
    return graph.number_of_nodes(), graph.number_of_edges()
