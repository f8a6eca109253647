"""The Celery application.

`celery -A workers.app worker` and `celery -A workers.app beat` configure it from the environment when
Celery first reads its configuration; the CLI and tests call `bind()` with services they built themselves.
Without a broker URL, tasks run eagerly in the calling process.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from digest.config import Settings, get_settings
from digest.services import Services

app = Celery("digest", include=["workers.tasks"])

_bound: Services | None = None


def celery_config(settings: Settings) -> dict[str, Any]:
    schedule: dict[str, dict[str, Any]] = {
        # Each source has its own interval; this tick only claims the ones that are due.
        "ingest-due-sources": {"task": "digest.ingest_due", "schedule": 60.0},
        # Each subscriber has their own hour and time zone; this tick claims the ones that are due.
        "deliver-due-digests": {"task": "digest.tick", "schedule": float(settings.tick_seconds)},
    }
    if settings.bounce_mailbox:
        # Bounces mailed back later; a few minutes' delay costs nothing, as the next digest is hours away.
        schedule["process-bounces"] = {"task": "digest.process_bounces", "schedule": 300.0}
    return {
        "broker_url": settings.broker_url or "memory://",
        "task_always_eager": settings.eager,
        "task_default_queue": settings.queue,
        "task_eager_propagates": True,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        "beat_schedule": schedule,
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(_bound.settings if _bound else get_settings()))


def bind(services: Services) -> Celery:
    """Use these services for tasks run by this process (the CLI, the web app, tests)."""
    global _bound
    _bound = services
    app.conf.update(celery_config(services.settings))
    return app


def services() -> Services:
    """The services of this process, built from the environment the first time a worker needs them."""
    global _bound
    if _bound is None:
        _bound = Services.build(get_settings())
    return _bound
