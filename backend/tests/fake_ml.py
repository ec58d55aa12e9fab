"""A local stand-in for ml-service's `POST /inference`: either a recording proxy in front of the real ml-service
(`upstream`), or a server that answers wrongly (`mode`: `html` (200 with a web page), `empty` (200 `{}`),
`no_outputs` (200 `{"outputs": []}`), `hang`)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from tests.servers import ThreadedServer


class FakeMLService(ThreadedServer):
    """Set `ML_SERVICE_URL` to `url`."""

    def __init__(self, mode: str = "proxy", upstream: str | None = None) -> None:
        app = FastAPI()
        super().__init__(app, mode)
        self.upstream = upstream

        @app.post("/inference")
        async def inference(request: Request) -> Any:
            raw = await request.body()
            self.requests.append({"headers": dict(request.headers), "body": await request.json()})
            if self.mode == "hang":
                await self.hang()
            if self.mode == "html":
                return HTMLResponse("<html><body><h1>Welcome to nginx!</h1></body></html>")
            if self.mode == "empty":
                return {}
            if self.mode == "no_outputs":
                return {"model": "x", "version": "1", "outputs": []}
            assert self.upstream, "a proxy needs an upstream"
            async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as c:
                r = await c.post("/inference", content=raw, headers={
                    k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type",
                                                                              "x-request-timeout-ms")})
            return Response(r.content, r.status_code, media_type="application/json")

    def texts(self, model: str | None = None) -> list[str]:
        """Every text sent (to `model` when given)."""
        return [t for r in self.requests if model in (None, r["body"]["model_type"])
                for t in r["body"]["data"].get("texts", [])]
