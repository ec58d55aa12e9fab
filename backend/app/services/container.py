"""The app's services, built once in the lifespan and handed to the routes and features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.config import Settings
from app.db import Database
from app.services.ai import AIService
from app.services.ml_client import MLServiceClient
from app.services.recommend import CatalogItem
from app.services.router import HybridRouter
from app.services.vertex import VertexClient


@dataclass
class Services:
    """Everything a request may need, built once per app."""

    settings: Settings
    db: Database
    ml: MLServiceClient
    ai: AIService
    router: HybridRouter
    catalog: list[CatalogItem]
    vertex: VertexClient
    catalog_embeddings: np.ndarray | None = None  # filled on first use (ml-service or Vertex: the same model)
    extra: dict[str, Any] = field(default_factory=dict)


