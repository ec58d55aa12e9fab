"""A small local server that plays OpenAI's `/v1/chat/completions` (the real wire format, reached through the
official `openai` client) and records every request, so tests can check what would have left the house. Its
`mode`: `ok`, `fail` (500), `hang`, `garbage` (a 200 with `{}`), `unauthorized` (401)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.servers import ThreadedServer

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


class FakeOpenAI(ThreadedServer):
    """`start()` it, point `OPENAI_BASE_URL` at `base_url`, read `requests` afterwards."""

    def __init__(self) -> None:
        app = FastAPI()
        super().__init__(app)

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body})
            if self.mode == "hang":
                await self.hang()
            if self.mode == "fail":
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=500)
            if self.mode == "unauthorized":
                return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}}, status_code=401)
            if self.mode == "garbage":
                return {}
            system = next(m["content"] for m in body["messages"] if m["role"] == "system")
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": json.dumps(answer(system, user))}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    @property
    def fail(self) -> bool:
        return self.mode == "fail"

    @fail.setter
    def fail(self, value: bool) -> None:
        self.mode = "fail" if value else "ok"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def prompts(self) -> list[str]:
        """The user message of every request (what the backend wrote for the model to read)."""
        return [m["content"] for r in self.requests for m in r["body"]["messages"] if m["role"] == "user"]
