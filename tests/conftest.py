"""Shared fixtures: one local Ray instance per test session, sample corpus and shared data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PONDER_PROGRESS", "0")


def shared_data_dir() -> Path | None:
    candidates = [os.environ.get("PONDER_SHARED_DATA"), ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate, "hotpotqa-dev.jsonl").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared QA data not found (set PONDER_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """Start one local Ray for the session; the indexing job reuses it."""
    import ray

    from indexer.config import IndexConfig

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=IndexConfig().object_store_memory,
            log_to_driver=False,
            _temp_dir=os.path.join("/tmp", "ponder-ray-tests"),
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, ray_local) -> Path:
    """The bundled sample corpus indexed once for the whole session."""
    from jobs.index_job import run_index

    db = tmp_path_factory.mktemp("sample") / "index"
    run_index(SAMPLE / "corpus", str(db))
    return db


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(SAMPLE / "corpus", target)
    return target
