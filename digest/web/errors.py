"""Error pages for people and error bodies for the API, from the core's exceptions."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.deliver.schedule import InvalidSchedule
from digest.mail.links import BadLink
from digest.readers import DigestNotFound, LinkGone
from digest.subscribers import feedback, subscriptions
from digest.web.admin import admin_error_page, is_admin_path
from digest.web.pages.common import Web, is_api
from digest.web.security import CsrfRejected


def install_error_pages(app: FastAPI, web: Web) -> None:  # noqa: C901 - one small handler per exception, registered together
    def field_error(field: str, problem: str) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": ["body", field], "msg": problem, "type": "value_error"}]}, status_code=422
        )

    @app.exception_handler(BadLink)
    async def bad_link(request: Request, error: BadLink) -> Response:
        if is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=400)
        return web.error_page(request, 400, str(error))

    @app.exception_handler(LinkGone)
    async def link_gone(request: Request, error: LinkGone) -> Response:
        if is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return web.error_page(request, 400, "this link is no longer valid")

    @app.exception_handler(feedback.UnknownFeedbackTarget)
    async def unknown_target(request: Request, error: feedback.UnknownFeedbackTarget) -> Response:
        if is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return web.error_page(request, 400, "this link is no longer valid")

    @app.exception_handler(DigestNotFound)
    async def digest_not_found(request: Request, error: DigestNotFound) -> Response:
        if is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return web.error_page(request, 404, "there is no such digest for you", heading="Digest not found")

    @app.exception_handler(subscriptions.InvalidSubscription)
    async def invalid_subscription(request: Request, error: subscriptions.InvalidSubscription) -> Response:
        if is_api(request):
            return field_error(error.field, error.problem)
        return web.error_page(request, 422, str(error))

    @app.exception_handler(InvalidSchedule)
    async def invalid_schedule(request: Request, error: InvalidSchedule) -> Response:
        if is_api(request):
            return field_error(error.field, error.problem)
        return web.error_page(request, 422, str(error))

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, error: CsrfRejected) -> Response:
        return web.error_page(
            request,
            403,
            "this form was not sent from a page of ours, or the page was open too long",
            heading="Please try again",
            retry=error.retry_path,
        )

    def for_admin(request: Request) -> bool:
        return web.settings.admin_password is not None and is_admin_path(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        if for_admin(request):
            problem = StarletteHTTPException(400, "this address has a value the page cannot use")
            return admin_error_page(web.pages.render, request, problem)
        if is_api(request):
            return await request_validation_exception_handler(request, error)
        return web.error_page(request, 400, "this link is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if for_admin(request):
            return admin_error_page(web.pages.render, request, error)
        if is_api(request) or error.status_code not in (404, 405):
            return await http_exception_handler(request, error)
        if error.status_code == 404:
            page = web.error_page(request, 404, "there is no page at this address", heading="Page not found")
        else:
            page = web.error_page(request, 405, "this address does not take that kind of request")
        if error.headers:
            page.headers.update(error.headers)
        return page
