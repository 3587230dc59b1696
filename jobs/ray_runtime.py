"""Starting and stopping Ray for a job: a local instance by default, a cluster by address."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

from indexer.config import IndexConfig

logger = logging.getLogger("ponder.ray")


@contextlib.contextmanager
def ray_session(address: str | None, config: IndexConfig) -> Iterator[int]:
    """Connect to Ray for the duration of a job and yield the number of CPUs it offers.

    With no address a local instance starts with a capped object store and stops at the
    end. With an address (``ray://host:10001`` or ``host:6379``) the job joins that
    cluster and leaves it running. An already initialised Ray is reused as it is.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield int(ray.cluster_resources().get("CPU", 1))
        return
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = os.environ.get("PONDER_PROGRESS", "1") != "0"
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        temp_dir = os.environ.get("PONDER_RAY_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "ponder-ray")
        # NOTE: the local instance's GCS and raylet listen on all interfaces (Ray 2.60 does
        # so even when given _node_ip_address="127.0.0.1"), so a host on an untrusted
        # network needs a firewall that blocks their ports.
        ray.init(
            include_dashboard=False,
            object_store_memory=config.object_store_memory,
            logging_level=logging.WARNING,
            log_to_driver=False,
            _temp_dir=temp_dir,
        )
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        ray.shutdown()
