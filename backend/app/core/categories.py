"""The household categories: the labels of ml-service's `task-category` model, the ones the OpenAI fallback is
asked to choose from, and the only ones a task may have."""

from __future__ import annotations

from typing import Literal, get_args

Category = Literal["kitchen", "bathroom", "laundry", "cleaning", "garden", "shopping", "bills", "maintenance", "pets",
                   "kids", "health", "car"]
CATEGORIES: tuple[str, ...] = get_args(Category)
