"""The web framework boundary: the only module that imports Starlette.

Starlette, not FastAPI, by measurement (docs/performance.md, "nudge serve"): the same
`/v1/track` handler answered ~1.5-2x the requests a second under Starlette on this machine,
and nothing here needs FastAPI's validation or OpenAPI layer (bodies are checked by the flow's
own contract).

Every request body is read with a cap (`serve.max_batch_bytes`, the Content-Length checked
first): a larger one is refused with 413 before it is buffered.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nudge.core import config as config_mod
from nudge.serve import http
from nudge.serve.metrics import ENV, Metrics
from nudge.serve.service import Service

Handler = Callable[[http.Incoming], Awaitable[http.Outgoing]]
CONFIG_ENV = "NUDGE_SERVE_CONFIG"


class TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def endpoint(service: Service, name: str, handler: Handler, limit: int) -> Callable[
        [Request], Awaitable[Response]]:
    metrics = service.metrics
    latency = metrics.latency.labels(name)

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        try:
            body = await _body(request, limit) if request.method == "POST" else b""
        except TooLarge:
            out = http.error(413, "payload_too_large", f"the body exceeds {limit} bytes")
        else:
            out = await handler(http.Incoming(
                request.method, request.url.path, dict(request.path_params),
                dict(request.query_params), dict(request.headers), body))
        latency.observe(time.perf_counter() - start)
        metrics.requests.labels(name, str(out.status)).inc()
        return Response(out.body, out.status, out.headers, out.media_type)

    return run


def routes(service: Service) -> list[Route]:
    cap = service.config.serve.max_batch_bytes
    return [
        Route("/v1/{kind:str}", endpoint(service, "collector", service.collect, cap),
              methods=["POST"]),
        Route("/webhooks/sendgrid", endpoint(service, "webhook", service.webhooks.sendgrid, cap),
              methods=["POST"]),
        Route("/webhooks/postmark",
              endpoint(service, "webhook", service.webhooks.postmark_hook, cap),
              methods=["POST"]),
        Route("/webhooks/mailgun", endpoint(service, "webhook", service.webhooks.mailgun, cap),
              methods=["POST"]),
        Route("/o/{token:str}", endpoint(service, "open", service.tracking.open, 0),
              methods=["GET", "HEAD"]),
        Route("/c/{token:str}", endpoint(service, "click", service.tracking.click, 0),
              methods=["GET", "HEAD"]),
        Route("/u/{token:str}", endpoint(service, "unsubscribe_page",
                                         service.tracking.unsubscribe_page, 0),
              methods=["GET"]),
        Route("/u/{token:str}", endpoint(service, "unsubscribe", service.tracking.unsubscribe,
                                         64 * 1024),
              methods=["POST"]),
        Route("/health", endpoint(service, "health", service.health, 0), methods=["GET"]),
        Route("/ready", endpoint(service, "ready", service.ready, 0), methods=["GET"]),
        Route("/metrics", endpoint(service, "metrics", service.prometheus, 0), methods=["GET"]),
    ]


def build(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()  # after the server stopped taking requests and answered them

    return Starlette(routes=routes(service), lifespan=lifespan)


def create_app() -> Starlette:
    """uvicorn's factory in every worker process: the config file named by the runner."""
    cfg = config_mod.load(os.environ[CONFIG_ENV])
    directory = os.environ.get(ENV) or tempfile.mkdtemp(prefix="nudge-metrics-")
    return build(Service(cfg, Metrics(directory)))
