"""The `digest` command line: each command builds its services from the environment and says what it did."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from digest.config import ConfigError, Settings, get_settings
from digest.db import SchemaError, check_schema, upgrade
from digest.services import Services

F = TypeVar("F", bound=Callable[..., Any])
PROGRESS_BAR_MIN_BYTES = 1_000_000


@contextmanager
def _services(*, need_schema: bool = True, settings: Settings | None = None) -> Iterator[Services]:
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


def _celery_dispatcher(services: Services) -> Any:
    """Celery is imported only by the commands that queue work, and bound to this process's services."""
    from workers.app import bind
    from workers.tasks import CeleryDispatcher

    bind(services)
    return CeleryDispatcher()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Personalized daily email digests of new research papers."""


@main.command("init-db")
def init_db() -> None:
    """Create the database schema, or upgrade it to this version."""
    with _services(need_schema=False) as services:
        before, after = upgrade(services.engine)
        url = services.engine.url.render_as_string(hide_password=True)
        if before == after:
            click.echo(f"Database {url} is already at schema revision {after}.")
        else:
            click.echo(f"Database {url} upgraded from revision {before or 'empty'} to {after}.")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest(paths: tuple[Path, ...]) -> None:
    """Store new paper listings from listing-page text dumps or JSON Lines files."""
    from digest.ingest import IngestFileError, ingest_paths

    with _services() as services:
        total = sum(p.stat().st_size for p in paths if p.is_file())
        try:
            if total >= PROGRESS_BAR_MIN_BYTES:
                with click.progressbar(length=total, label="Ingesting", file=sys.stderr) as bar:
                    report = ingest_paths(services.sessions, list(paths), progress=bar.update)
            else:
                report = ingest_paths(services.sessions, list(paths))
        except IngestFileError as exc:
            raise click.ClickException(str(exc)) from None
        for error in report.errors:
            click.echo(f"rejected {error}", err=True)
        click.echo(
            f"Ingested {len(report.files)} file(s): {report.new} new, {report.duplicate} duplicate, "
            f"{report.rejected} rejected."
        )


@main.command()
@click.argument("email")
@click.option(
    "--topics", required=True, help='Comma-separated keywords, e.g. "LoRA, parameter-efficient fine-tuning".'
)
@click.option("--confirmed", is_flag=True, help="Skip double opt-in (the address owner asked you directly).")
def subscribe(email: str, topics: str, confirmed: bool) -> None:
    """Subscribe an address (admin path); sends a confirmation email unless --confirmed."""
    from digest.db import transaction
    from digest.subscriptions import InvalidSubscription
    from digest.subscriptions import subscribe as subscribe_address

    with _services() as services:
        try:
            with transaction(services.sessions) as session:
                result = subscribe_address(session, email, topics, confirmed=confirmed)
        except InvalidSubscription as exc:
            raise click.ClickException(str(exc)) from None
        if result.needs_confirmation:
            _celery_dispatcher(services).send_confirmation(result.subscriber_id)
            click.echo(f"{email}: pending; a confirmation email was sent.")
        else:
            click.echo(f"{email}: {'subscribed' if result.created else 'updated'}, active.")


@main.command()
@click.option(
    "--date",
    "digest_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The digest date (default: today, UTC).",
)
def run(digest_date: Any) -> None:
    """Send one day's digest to every active subscriber: rank, render, send."""
    from digest.daily import run_day
    from digest.models import utcnow

    day: date = digest_date.date() if digest_date else utcnow().date()
    with _services() as services:
        summary = run_day(services, day, _celery_dispatcher(services))
        if services.settings.broker_url and summary.not_yet_sent:
            click.echo(f"Queued {summary.not_yet_sent} digest(s) for the workers.")
        click.echo(
            f"Digest for {day.isoformat()}: {summary.subscribers} subscriber(s), {summary.sent} sent, "
            f"{summary.nothing_new} skipped (nothing new), {summary.already_sent} already sent, "
            f"{summary.failed} failed."
        )
        for failure in summary.failures:
            click.echo(f"failed: {failure}", err=True)
        if not services.settings.smtp_url and summary.sent:
            click.echo(f"Emails written to {services.settings.outbox_dir}")
        if summary.failed:
            sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the web app (subscribe, confirm, feedback, unsubscribe, preferences)."""
    import uvicorn

    from digest.web.app import create_app

    with _services() as services:
        app = create_app(services, _celery_dispatcher(services))
        uvicorn.run(app, host=host, port=port)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Made afresh for the demo (only ever deletes a folder an earlier demo made).",
)
@click.option(
    "--listings",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Folder of listing files (default: ../shared/listings beside the project).",
)
def demo(data_dir: Path, listings: Path | None) -> None:
    """Run the whole daily loop on the embedded default and show who got which papers."""
    from digest.demo import DemoError, run_demo

    try:
        run_demo(data_dir, listings, echo=click.echo)
    except (DemoError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
