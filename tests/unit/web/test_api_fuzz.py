"""Schemathesis against the app's own OpenAPI schema: generated requests to every JSON endpoint, valid and
invalid, never get a server error, and whatever they do leaves the stored data readable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select

from digest.models import Feedback, Subscriber
from digest.services import Services
from digest.web.app import create_app
from tests.support.web import RecordingDispatcher, add_listing, add_subscriber


@pytest.fixture
def fuzzed_app(services: Services) -> Iterator[FastAPI]:
    add_subscriber(services)
    add_listing(services)
    yield create_app(services, RecordingDispatcher())
    with services.sessions() as session:
        # Nothing the fuzzer sent may leave the store inconsistent: every vote names a stored subscriber.
        orphans = session.scalar(
            select(func.count())
            .select_from(Feedback)
            .where(Feedback.subscriber_id.not_in(select(Subscriber.id)))
        )
        assert orphans == 0


def test_no_generated_request_gets_a_server_error(fuzzed_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    checked = []
    statuses: list[int] = []
    for found in schema.get_all_operations():
        operation = found.ok()
        checked.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: Any) -> None:
            response = case.call()
            statuses.append(response.status_code)
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text[:500],
            )
            if response.status_code >= 400:
                assert "detail" in response.json(), response.text[:500]  # errors say what was wrong

        no_server_error()
    assert {"POST /api/subscribe", "GET /api/preferences/{token}", "PUT /api/preferences/{token}"} <= set(
        checked
    )
    assert any(c.startswith("POST /api/feedback") for c in checked), checked
    assert len(statuses) >= 5 * len(checked), statuses  # the fuzzer really sent requests to each
    assert any(status < 400 for status in statuses) and any(status >= 400 for status in statuses)
