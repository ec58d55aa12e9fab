"""Dynamic batching: `Batcher` (batcher.py) over fair per-request lanes (queues.py), with load shedding by expected
wait and queueing delay (pressure.py)."""

from ml_service.batching.batcher import Batcher, BatchObserver
from ml_service.batching.pressure import Pressure, ShedPolicy
from ml_service.batching.queues import BatchStats, split_window
from ml_service.errors import InferenceFailed

__all__ = ["BatchObserver", "BatchStats", "Batcher", "InferenceFailed", "Pressure", "ShedPolicy", "split_window"]
