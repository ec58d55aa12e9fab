"""A small local server that plays OpenAI's `/v1/chat/completions` (the real wire format, reached through the
official `openai` client) and records every request, so tests can check what would have left the house."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

KEYWORDS = {"lawn": "garden", "mow": "garden", "plant": "garden", "bill": "bills", "pay": "bills", "dog": "pets",
            "cat": "pets", "car": "car", "tyre": "car", "oven": "kitchen", "dish": "kitchen", "wash": "laundry",
            "shower": "bathroom", "toilet": "bathroom", "vacuum": "cleaning", "dust": "cleaning"}


def answer(system: str, user: str) -> dict[str, Any]:
    """A deterministic answer in the JSON each feature asks for."""
    text = user.lower()
    if '"category"' in system:
        category = next((c for k, c in KEYWORDS.items() if k in text), "cleaning")
        return {"category": category, "score": 0.9}
    if '"intent"' in system:
        return {"intent": "timer" if "timer" in text else "reminder_update", "score": 0.8}
    if '"indices"' in system:
        n = len(re.findall(r"^\d+: ", user, re.MULTILINE))
        return {"indices": list(range(min(n, 3)))}
    if '"suggestions"' in system:
        return {"suggestions": [{"index": i, "reason": "often needed"} for i in range(3)]}
    return {}


class FakeOpenAI:
    """`start()` it, point `OPENAI_BASE_URL` at `base_url`, read `requests` afterwards."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body})
            if self.fail:
                from fastapi.responses import JSONResponse

                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=500)
            system = next(m["content"] for m in body["messages"] if m["role"] == "system")
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": json.dumps(answer(system, user))}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def sent_text(self) -> str:
        """Everything the backend sent, as one string (to look for what must never leave)."""
        return json.dumps([r["body"] for r in self.requests], ensure_ascii=False)
