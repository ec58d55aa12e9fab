"""What may leave the house, decided in one place: per endpoint and source, which fields of a task (and of the
request) are sent. ml-service runs in the house and gets what its models need; a managed source (Vertex AI,
OpenAI) gets only the fields listed, each sanitized first (`Redactor`, the one way texts reach them).

Sanitizing is CPU work (a 1,000-title prompt takes ~0.7 s), so it runs in a worker thread, never on the event loop,
and what was sanitized is cached by its text and the household's names (a new member or assignee is a new
version: nothing sanitized without that name is reused)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

from app.core.config import Source
from app.services.sanitize import Sanitized, Sanitizer

Endpoint = Literal["categorize", "intent", "similar", "recommend", "classify-image", "learn"]
#: `text`: the text of the request itself; `title`, `notes`: of the household's tasks; `catalog`: the public
#: catalog of common tasks; `image`: the uploaded photo
Part = Literal["text", "title", "notes", "catalog", "image"]

POLICY: Final[Mapping[Endpoint, Mapping[Source, frozenset[Part]]]] = {
    "categorize": {"ml-service": frozenset({"text"}), "vertex": frozenset({"text"}), "openai": frozenset({"text"})},
    "intent": {"ml-service": frozenset({"text"}), "vertex": frozenset({"text"}), "openai": frozenset({"text"})},
    "similar": {"ml-service": frozenset({"text", "title", "notes"}), "vertex": frozenset({"text", "title"}),
                "openai": frozenset({"text", "title"})},
    "recommend": {"ml-service": frozenset({"title", "notes", "catalog"}), "vertex": frozenset({"title", "catalog"}),
                  "openai": frozenset({"title", "catalog"})},
    "classify-image": {"ml-service": frozenset({"image"})},
    # the household's labelled examples (a task's title, as categorize sends it, and its label) train ml-service's
    # categorizer; the managed APIs cannot be trained, so they get none
    "learn": {"ml-service": frozenset({"title"})},
}
#: the sources outside the house: every text they get is sanitized
MANAGED: Final[frozenset[Source]] = frozenset({"vertex", "openai"})


def allows(endpoint: Endpoint, source: Source, part: Part) -> bool:
    return part in POLICY[endpoint].get(source, frozenset())


def task_text(endpoint: Endpoint, source: Source, title: str, notes: str | None) -> str:
    """A task as `source` may see it for `endpoint`: its title, with its notes only where the policy lets them go
    (`"<title>. <notes>"`, the text ml-service embeds and the backend stores)."""
    if not allows(endpoint, source, "title"):
        raise PermissionError(f"{source} gets no task titles for {endpoint}")
    return f"{title}. {notes}" if notes and allows(endpoint, source, "notes") else title


class Redactor:
    """A household's sanitizer, with the cache of what it sanitized."""

    def __init__(self, egress: Egress, names: list[str], sanitizer: Sanitizer, version: str) -> None:
        self.egress, self.names, self.sanitizer, self.version = egress, names, sanitizer, version
        self._cache, self._size = egress.cache, egress.cache_size

    def including(self, names: Iterable[str | None]) -> Redactor:
        """This household's redactor with more names (a new task's assignee, before it is stored)."""
        more = [n for n in names if n]
        return self.egress.redactor([*self.names, *more]) if more else self

    async def clean(self, texts: Sequence[str]) -> list[Sanitized]:
        """Each text sanitized (in a worker thread, and only those not in the cache), in order."""
        found: dict[str, Sanitized] = {}
        for t in texts:
            hit = self._cache.get((self.version, t))
            if hit is not None:
                self._cache.move_to_end((self.version, t))
                found[t] = hit
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            done = await asyncio.to_thread(lambda: [self.sanitizer.sanitize(t) for t in missing])
            for t, s in zip(missing, done, strict=True):
                found[t] = self._cache[(self.version, t)] = s
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return [found[t] for t in texts]

    def restore(self, text: str, pieces: Iterable[Sanitized]) -> str:
        """Put the originals back in an answer: each placeholder that stands for one value in all the `pieces`
        (pieces are sanitized one by one, so `[PERSON_1]` of two pieces may be two people: those stay as they are)."""
        mapping: dict[str, str] = {}
        ambiguous: set[str] = set()
        for piece in pieces:
            for placeholder, value in piece.mapping.items():
                if mapping.setdefault(placeholder, value) != value:
                    ambiguous.add(placeholder)
        return self.sanitizer.restore(text, {k: v for k, v in mapping.items() if k not in ambiguous})


class Egress:
    """The app's sanitizers (one per household names version) and their shared cache of sanitized texts."""

    def __init__(self, cache_size: int = 20_000) -> None:
        self.cache_size = cache_size
        self.cache: OrderedDict[tuple[str, str], Sanitized] = OrderedDict()
        self._sanitizers: OrderedDict[str, Sanitizer] = OrderedDict()

    def redactor(self, names: Iterable[str]) -> Redactor:
        """The redactor of a household whose members and assignees are `names`."""
        known = sorted({n.strip() for n in names if n and n.strip()})
        version = hashlib.sha256("\x00".join(known).encode()).hexdigest()[:16]
        sanitizer = self._sanitizers.get(version)
        if sanitizer is None:
            sanitizer = self._sanitizers[version] = Sanitizer(known)
            while len(self._sanitizers) > 8:
                self._sanitizers.popitem(last=False)
        self._sanitizers.move_to_end(version)
        return Redactor(self, known, sanitizer, version)
