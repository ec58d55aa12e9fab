"""Dynamic batching: `Batcher` (batcher.py) over fair per-request lanes (queues.py)."""

from ml_service.batching.batcher import Batcher, BatchObserver
from ml_service.batching.queues import BatchStats, split_window
from ml_service.errors import InferenceFailed

__all__ = ["BatchObserver", "BatchStats", "Batcher", "InferenceFailed", "split_window"]
