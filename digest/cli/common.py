"""What every command shares: services built from the environment, and the Celery dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from digest.config import ConfigError, Settings, get_settings
from digest.db import SchemaError, check_schema
from digest.services import Services


@contextmanager
def open_services(*, need_schema: bool = True, settings: Settings | None = None) -> Iterator[Services]:
    try:
        services = Services.build(settings or get_settings())
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        if need_schema:
            check_schema(services.engine)
        yield services
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        services.close()


def celery_dispatcher(services: Services) -> Any:
    """Celery is imported only by the commands that queue work, and bound to this process's services."""
    from workers.app import bind
    from workers.tasks import CeleryDispatcher

    bind(services)
    return CeleryDispatcher()
