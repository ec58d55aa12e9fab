"""Suggestions from a curated catalog of common household tasks (`data/catalog.csv`: 240 tasks with a category and
a typical frequency), ranked by how close they are to what the household already does (embeddings) and by what
is overdue given the frequency; what the household already has and has not done is left out. Pure functions:
the endpoint gives them embeddings and tasks."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from importlib import resources

import numpy as np

SAME_TASK = 0.72  # cosine (MiniLM) at which a catalog task is one the household has: "Walk the dog" vs
#                   "Walk the dog in the park" 0.77, "Order pet food" vs "Buy dog food" 0.73, "Feed"/"Worm the cat" 0.67


@dataclass(frozen=True)
class CatalogItem:
    title: str
    category: str
    every_days: int


@dataclass(frozen=True)
class HouseholdTask:
    title: str
    category: str | None
    embedding: np.ndarray  # normalized
    done: bool
    done_at: dt.datetime | None


@dataclass(frozen=True)
class Recommendation:
    title: str
    category: str
    every_days: int
    score: float
    reason: str


def load_catalog() -> list[CatalogItem]:
    text = resources.files("app").joinpath("data/catalog.csv").read_text(encoding="utf-8")
    return [CatalogItem(r["title"], r["category"], int(r["every_days"])) for r in csv.DictReader(text.splitlines())]


def rank(catalog: list[CatalogItem], catalog_emb: np.ndarray, tasks: list[HouseholdTask], now: dt.datetime,
         limit: int = 10) -> list[Recommendation]:
    """The best `limit` suggestions: overdue repeats first (by how overdue), then new tasks by affinity."""
    if not tasks:  # nothing known about the household: the most frequent chores first
        picks = sorted(catalog, key=lambda c: (c.every_days, c.title))[:limit]
        return [Recommendation(c.title, c.category, c.every_days, 0.0, f"a common {c.category} task") for c in picks]
    task_emb = np.stack([t.embedding for t in tasks])
    sims = catalog_emb @ task_emb.T  # [catalog, tasks]
    per_category: dict[str, int] = {}
    for t in tasks:
        if t.category:
            per_category[t.category] = per_category.get(t.category, 0) + 1
    out: list[Recommendation] = []
    for i, item in enumerate(catalog):
        row = sims[i]
        best = int(row.argmax())
        match = tasks[best]
        if row[best] >= SAME_TASK:
            if not match.done or match.done_at is None:
                continue  # the household has it and has not done it yet
            days = (now - match.done_at).days
            if days < item.every_days:
                continue  # done recently enough
            score = 1.0 + min(days / item.every_days - 1.0, 3.0)
            out.append(Recommendation(item.title, item.category, item.every_days, round(score, 4),
                                      f"last done {days} days ago; usually every {item.every_days} days"))
            continue
        top = np.sort(row)[-3:]
        affinity = float(top.mean())
        same = per_category.get(item.category, 0)
        score = affinity + 0.1 * min(same, 3) / 3
        reason = (f"you have {same} {item.category} task{'s' if same != 1 else ''}, like '{match.title}'" if same
                  else f"close to your '{match.title}'")
        out.append(Recommendation(item.title, item.category, item.every_days, round(score, 4), reason))
    out.sort(key=lambda r: -r.score)
    return out[:limit]
