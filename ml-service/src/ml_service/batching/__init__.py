"""Dynamic batching: `Batcher` (batcher.py) over fair per-request lanes (queues.py)."""

from ml_service.batching.batcher import Batcher
from ml_service.batching.queues import BatchStats, split_window
from ml_service.errors import InferenceFailed

__all__ = ["BatchStats", "Batcher", "InferenceFailed", "split_window"]
