"""A stand-in for the Cloud Storage JSON API, serving the files of a local folder (one sub-folder per bucket)
read-only: what google-cloud-storage needs to list and download objects. Point the official client at it with
`STORAGE_EMULATOR_HOST=<url>` (it then sends no credentials).

    GET /storage/v1/b/{bucket}/o?prefix=&pageToken=&maxResults=   list objects
    GET /storage/v1/b/{bucket}/o/{object}                          object metadata (alt=media: its bytes)
    GET /download/storage/v1/b/{bucket}/o/{object}?alt=media       object bytes
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import google_crc32c

from ml_service_testing._http import Handler, Served


@dataclass
class FakeGCS(Served):
    """Buckets are the folders of `root`; object names are the files' paths below them."""

    root: Path
    page_size: int = 100
    requests: list[str] = field(default_factory=list)
    #: downloads wait while this is clear (a test holds a copy half-way)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.release.set()

    def names(self, bucket: str, prefix: str) -> list[str]:
        base = self.root / bucket
        return sorted(n for n in (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
                      if n.startswith(prefix))

    def path(self, bucket: str, name: str) -> Path | None:
        base = (self.root / bucket).resolve()
        p = (base / name).resolve()
        return p if p.is_relative_to(base) and p.is_file() else None

    def resource(self, bucket: str, name: str, p: Path) -> dict[str, Any]:
        data = p.read_bytes()
        return {"kind": "storage#object", "id": f"{bucket}/{name}/1", "name": name, "bucket": bucket,
                "generation": "1", "metageneration": "1", "contentType": "application/octet-stream",
                "size": str(len(data)), "md5Hash": _md5(data), "crc32c": _crc32c(data),
                "updated": "2026-11-29T12:00:00.000Z", "storageClass": "STANDARD"}


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 (GCS's own checksum)


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()  # type: ignore[no-untyped-call]


class _GCSHandler(Handler):
    def do_GET(self) -> None:
        gcs: FakeGCS = self.owner
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with gcs._lock:
            gcs.requests.append(self.path)
        parts = url.path.split("/")
        # ['', 'storage', 'v1', 'b', bucket, 'o', object...] or ['', 'download', 'storage', 'v1', 'b', ...]
        download = parts[1:2] == ["download"]
        if download:
            parts = parts[1:]
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 6 or parts[5] != "o":
            self.google_error(404, f"not found: {url.path}", "NOT_FOUND")
            return
        bucket = unquote(parts[4])
        if not (gcs.root / bucket).is_dir():
            self.google_error(404, f"bucket {bucket} does not exist", "NOT_FOUND")
            return
        if len(parts) == 6 or parts[6] == "":
            self._list(gcs, bucket, query)
            return
        name = unquote("/".join(parts[6:]))
        p = gcs.path(bucket, name)
        if p is None:
            self.google_error(404, f"No such object: {bucket}/{name}", "NOT_FOUND")
            return
        if download or query.get("alt") == "media":
            self.owner.release.wait(120)
            data = p.read_bytes()
            self.send(200, data, "application/octet-stream",
                      {"x-goog-hash": f"crc32c={_crc32c(data)},md5={_md5(data)}", "x-goog-generation": "1",
                       "x-goog-stored-content-length": str(len(data))})
            return
        self.send_json(200, gcs.resource(bucket, name, p))

    def _list(self, gcs: FakeGCS, bucket: str, query: dict[str, str]) -> None:
        names = gcs.names(bucket, query.get("prefix", ""))
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or gcs.page_size), gcs.page_size)
        page = names[start:start + size]
        doc: dict[str, Any] = {"kind": "storage#objects",
                               "items": [gcs.resource(bucket, n, gcs.root / bucket / n) for n in page]}
        if start + size < len(names):
            doc["nextPageToken"] = str(start + size)
        self.send_json(200, doc)


FakeGCS.handler = _GCSHandler

__all__ = ["FakeGCS"]
