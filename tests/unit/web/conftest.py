"""The web tests' app over HTTP, with a dispatcher that records what the app asked to queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from digest.services import Services
from digest.web.app import create_app
from tests.support.web import BASE_URL, RecordingDispatcher


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def client(services: Services, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    with TestClient(
        create_app(services, dispatcher), base_url=BASE_URL, follow_redirects=False
    ) as test_client:
        yield test_client
