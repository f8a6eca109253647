"""The `digest` command line: each command builds its services from the environment and says what it did."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from digest.cli.common import celery_dispatcher, open_services
from digest.config import ConfigError, get_settings
from digest.db import upgrade
from digest.services import Services

PROGRESS_BAR_MIN_BYTES = 1_000_000


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Personalized daily email digests of new research papers."""


@main.command("init-db")
def init_db() -> None:
    """Create the database schema, or upgrade it to this version."""
    with open_services(need_schema=False) as services:
        before, after = upgrade(services.engine)
        url = services.engine.url.render_as_string(hide_password=True)
        if before == after:
            click.echo(f"Database {url} is already at schema revision {after}.")
        else:
            click.echo(f"Database {url} upgraded from revision {before or 'empty'} to {after}.")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--source", "source_name", help="Fetch this configured source now instead of reading files.")
def ingest(paths: tuple[Path, ...], source_name: str | None) -> None:
    """Store new paper listings from listing-page text dumps or JSON Lines files, or from a source."""
    from digest.ingest.files import IngestFileError, ingest_paths

    if bool(paths) == bool(source_name):
        raise click.UsageError("give either listing files or --source NAME")
    with open_services() as services:
        if source_name:
            _fetch_now(services, source_name)
            return
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
            f"Ingested {len(report.files)} file(s): {report.new} new, {report.updated} updated, "
            f"{report.duplicate} duplicate, {report.rejected} rejected."
        )


def _fetch_now(services: Services, name: str) -> None:
    from digest.ingest.sources import SourceError, fetch_source, get_source

    try:
        with services.sessions() as session:
            source_id = get_source(session, name).id
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    outcome = fetch_source(services, source_id)
    for problem in outcome.problems:
        click.echo(f"rejected {name} {problem}", err=True)
    if outcome.error:
        raise click.ClickException(outcome.summary())
    click.echo(outcome.summary())


@main.command()
@click.argument("email")
@click.option(
    "--topics", required=True, help='Comma-separated keywords, e.g. "LoRA, parameter-efficient fine-tuning".'
)
@click.option("--confirmed", is_flag=True, help="Skip double opt-in (the address owner asked you directly).")
@click.option(
    "--cadence", type=click.Choice(["daily", "weekly", "paused"]), default="daily", show_default=True
)
@click.option("--hour", type=int, default=None, help="Local delivery hour, 0-23 (default: DIGEST_SEND_HOUR).")
@click.option(
    "--timezone", default=None, help="IANA time zone, e.g. Europe/Berlin (default: DIGEST_TIMEZONE)."
)
@click.option("--weekday", type=click.IntRange(0, 6), default=0, help="Weekly cadence: 0 is Monday.")
def subscribe(
    email: str,
    topics: str,
    confirmed: bool,
    cadence: str,
    hour: int | None,
    timezone: str | None,
    weekday: int,
) -> None:
    """Subscribe an address (admin path); sends a confirmation email unless --confirmed."""
    from digest.deliver.schedule import InvalidSchedule, validated
    from digest.limits import default_limits
    from digest.readers import Readers
    from digest.subscribers.subscriptions import InvalidSubscription

    with open_services() as services:
        settings = services.settings
        readers = Readers(services, celery_dispatcher(services), default_limits(settings))
        try:
            schedule = validated(
                cadence,
                settings.default_send_hour if hour is None else hour,
                timezone or settings.default_timezone,
                weekday,
            )
            result = readers.subscribe_as_operator(email, topics, confirmed=confirmed, schedule=schedule)
        except (InvalidSubscription, InvalidSchedule) as exc:
            raise click.ClickException(str(exc)) from None
        if result.suppressed:
            raise click.ClickException(
                f"{email} is suppressed (it bounced or complained); nothing was sent. "
                "`digest unsuppress` lifts that, if you know the mailbox works again."
            )
        if result.needs_confirmation:
            click.echo(f"{email}: pending; a confirmation email was sent.")
        else:
            click.echo(f"{email}: {'subscribed' if result.created else 'updated'}, active.")


@main.command()
@click.argument("email")
def unsuppress(email: str) -> None:
    """Let a bounced or complaining address be mailed again; it must still confirm through the form."""
    from digest.db import transaction
    from digest.subscribers.subscriptions import InvalidSubscription, lift_suppression

    with open_services() as services:
        try:
            with transaction(services.sessions) as session:
                subscriber = lift_suppression(session, email)
                state = None if subscriber is None else subscriber.status.value
        except InvalidSubscription as exc:
            raise click.ClickException(str(exc)) from None
    if state is None:
        raise click.ClickException(f"no subscriber with the address {email}")
    click.echo(f"{email}: {state}; a new subscribe request from its owner will send a confirmation email.")


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
    from digest.deliver.day import run_day
    from digest.models import utcnow

    day: date = digest_date.date() if digest_date else utcnow().date()
    with open_services() as services:
        summary = run_day(services, day, celery_dispatcher(services))
        if services.settings.broker_url and summary.not_yet_sent:
            click.echo(f"Queued {summary.not_yet_sent} digest(s) for the workers.")
        click.echo(
            f"Digest for {day.isoformat()}: {summary.subscribers} subscriber(s), {summary.sent} sent, "
            f"{summary.nothing_new} skipped (nothing new), {summary.already_sent} already sent, "
            f"{summary.failed} failed, {summary.bounced} bounced, {summary.retrying} to retry."
        )
        if summary.note:
            click.echo(f"Nothing to send: {summary.note}.")
        for failure in summary.failures:
            click.echo(f"not delivered: {failure}", err=True)
        if not services.settings.smtp_url and summary.sent:
            click.echo(f"Emails written to {services.settings.outbox_dir}")
        if summary.failed or summary.retrying:
            sys.exit(1)


@main.command("dkim-keygen")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--selector", default="digest", show_default=True, help="The DKIM selector (DNS label).")
@click.option("--domain", default=None, help="The signing domain (default: the domain of DIGEST_FROM).")
def dkim_keygen(path: Path, selector: str, domain: str | None) -> None:
    """Write a new DKIM private key to PATH and print the DNS TXT record to publish for it."""
    from digest.mail.dkim import generate_key

    try:
        settings = get_settings()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        record = generate_key(path, selector, domain or settings.mail_domain)
    except FileExistsError:
        raise click.ClickException(f"{path} already exists; a key is never overwritten") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(f"could not write a key to {path}: {exc}") from None
    click.echo(record)
    click.echo(f"Then set DIGEST_DKIM_KEY_FILE={path} and DIGEST_DKIM_SELECTOR={selector}.", err=True)


@main.command()
def tick() -> None:
    """Do what the beat does every few minutes: settle stuck sends, claim due subscribers, rank, queue."""
    from digest.deliver.day import tick as run_tick

    with open_services() as services:
        report = run_tick(services, celery_dispatcher(services))
        for item in report.reconciled:
            click.echo(f"reconciled digest {item.digest_id} to {item.email}: {item.explanation}")
        click.echo(
            f"{len(report.opened.digest_ids)} digest(s) opened, {report.planned.planned} ranked with papers, "
            f"{report.planned.empty} with nothing new, {report.queued} queued to send."
        )


@main.command()
def status() -> None:
    """Today's sent, failed and bounced digests, the queue depth, and who is due next."""
    from digest.status import gather, report

    with open_services() as services:
        for line in report(gather(services)):
            click.echo(line)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Proxies whose X-Forwarded-For is believed (default: DIGEST_TRUSTED_PROXIES, else loopback).",
)
def serve(host: str, port: int, forwarded_allow_ips: str | None) -> None:
    """Serve the web app (subscribe, confirm, feedback, unsubscribe, preferences, archive, admin)."""
    import uvicorn

    from digest.web.app import create_app, server_options

    with open_services() as services:
        app = create_app(services, celery_dispatcher(services))
        options = server_options(services.settings)
        if forwarded_allow_ips:
            if "*" in forwarded_allow_ips.split(","):
                raise click.ClickException("--forwarded-allow-ips cannot be '*'; see DIGEST_TRUSTED_PROXIES")
            options["forwarded_allow_ips"] = forwarded_allow_ips
        uvicorn.run(app, host=host, port=port, **options)


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


def _register() -> None:
    from digest.cli.bounces import bounces
    from digest.cli.evaluate import evaluate
    from digest.cli.sources import sources

    main.add_command(sources)
    main.add_command(evaluate)
    main.add_command(bounces)


_register()
