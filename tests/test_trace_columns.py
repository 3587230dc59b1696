"""Trace tables written before a column existed get it on open, so old databases keep recording."""

from __future__ import annotations

import lancedb
import pyarrow as pa

from solver.traces import EPISODES, STEPS, TraceStore


def test_old_steps_table_gains_columns(tmp_path):
    db = tmp_path / "index"
    connection = lancedb.connect(str(db))
    old_steps = pa.schema([field for field in STEPS if field.name != "evidence_ids"])
    old_row = {field.name: None for field in old_steps}
    old_row.update({"episode_id": "old", "step_index": 0, "action": "retrieve:chunks"})
    connection.create_table("steps", data=pa.Table.from_pylist([old_row], schema=old_steps))
    connection.create_table("episodes", schema=EPISODES)

    TraceStore(str(db))

    steps = connection.open_table("steps")
    assert "evidence_ids" in steps.schema.names
    assert steps.to_arrow().to_pylist()[0]["evidence_ids"] is None
    assert steps.to_arrow().to_pylist()[0]["episode_id"] == "old"
