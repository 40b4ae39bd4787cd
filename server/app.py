"""The FastAPI application: WebSocket and HTTP routes over one shared `Service`."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from server import http_api
from server.config import Settings
from server.service import Service
from server.websocket import serve_websocket

STATIC = Path(__file__).parent / "static"
HTTP_PATHS = ("/v1/encode", "/v1/decode", "/v1/info")
HTTP_VIOLATIONS = {401: "unauthorized", 413: "upload_size", 503: "uploads"}
"""HTTP answers counted as limit violations, by kind."""
PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>hopcodec</title>
<h1>hopcodec service</h1><p>The browser page is not installed. See <a href="/docs">/docs</a>
for the HTTP API and docs/protocol.md for the WebSocket protocol.</p>"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app; settings default to the HOPCODEC_* environment."""
    service = Service.create(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="hopcodec", summary="Streaming low-bitrate speech codec service",
                  description="WebSocket endpoints (/v1/decode, /v1/encode, /v1/loopback) are "
                  "described in docs/protocol.md.", lifespan=lifespan)
    app.state.service = service
    app.include_router(http_api.router)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        if path.startswith("/v1/"):
            label = path if path in HTTP_PATHS else "other"  # bounded label values
            service.metrics.http_requests.labels(label, str(response.status_code)).inc()
            if response.status_code in HTTP_VIOLATIONS:
                service.metrics.violations.labels(HTTP_VIOLATIONS[response.status_code]).inc()
        return response

    for endpoint in ("decode", "encode", "loopback"):
        app.add_api_websocket_route(f"/v1/{endpoint}", _websocket_route(endpoint, service))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        return FileResponse(page) if page.is_file() else HTMLResponse(PLACEHOLDER)

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app


def _websocket_route(endpoint: str, service: Service) -> Callable[[WebSocket], Awaitable[None]]:
    async def route(websocket: WebSocket) -> None:
        await serve_websocket(websocket, endpoint, service)

    route.__name__ = f"websocket_{endpoint}"
    return route


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (each worker process reads HOPCODEC_* itself)."""
    return create_app(Settings.from_env())
