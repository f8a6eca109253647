"""The site's plumbing: static files and the health check."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.web.pages.common import TEMPLATES_DIR, Web

log = logging.getLogger(__name__)

STATIC_FILES = {"style.css": "text/css", "app.js": "text/javascript", "icon.svg": "image/svg+xml"}


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

    return router
