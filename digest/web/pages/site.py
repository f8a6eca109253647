"""The site's plumbing: static files and the health check."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.metrics import exposition
from digest.web.pages.common import TEMPLATES_DIR, Web

log = logging.getLogger(__name__)

STATIC_FILES = {
    "style.css": "text/css",
    "app.js": "text/javascript",
    "votes.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}


def router(web: Web) -> APIRouter:
    router = APIRouter()

    static = {name: (TEMPLATES_DIR / name).read_text(encoding="utf-8") for name in STATIC_FILES}

    @router.get("/static/{name}", name="static", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC_FILES:
            raise StarletteHTTPException(404)
        return Response(
            static[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    @router.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """200 while the database answers, 503 when it does not."""
        try:
            web.core.reading(lambda s: s.execute(text("SELECT 1")).scalar_one())
        except SQLAlchemyError:
            log.warning("health check: database unreachable", exc_info=True)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus' scrape, with `Authorization: Bearer <DIGEST_METRICS_TOKEN>`; absent without a token."""
        token = web.settings.metrics_token
        if token is None:
            raise StarletteHTTPException(404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(exposition(web.core.services), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
