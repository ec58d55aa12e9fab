"""Local stand-ins for the sources run in a thread of the test process (uvicorn on an ephemeral loopback port):
each records what it receives and can be told to misbehave (`mode`)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI


class ThreadedServer:
    """`start()`, point the backend at `url`, read `requests` afterwards; `mode` says how to answer."""

    def __init__(self, app: FastAPI, mode: str = "ok") -> None:
        self.requests: list[dict[str, Any]] = []
        self.mode = mode
        self._stopping = False
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._stopping = True
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def hang(self) -> None:
        """What a hung server does: nothing, until the test ends or the mode changes."""
        while self.mode == "hang" and not self._stopping:
            await asyncio.sleep(0.05)

    def sent_text(self) -> str:
        """Everything received, as one string (to look for what must never leave)."""
        return json.dumps([r["body"] for r in self.requests], ensure_ascii=False)
