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
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--source", "source_name", help="Fetch this configured source now instead of reading files.")
def ingest(paths: tuple[Path, ...], source_name: str | None) -> None:
    """Store new paper listings from listing-page text dumps or JSON Lines files, or from a source."""
    from digest.ingest.files import IngestFileError, ingest_paths

    if bool(paths) == bool(source_name):
        raise click.UsageError("give either listing files or --source NAME")
    with _services() as services:
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
    from digest.db import transaction
    from digest.deliver.schedule import InvalidSchedule, validated
    from digest.subscribers.subscriptions import InvalidSubscription
    from digest.subscribers.subscriptions import subscribe as subscribe_address

    with _services() as services:
        settings = services.settings
        try:
            schedule = validated(
                cadence,
                settings.default_send_hour if hour is None else hour,
                timezone or settings.default_timezone,
                weekday,
            )
            with transaction(services.sessions) as session:
                result = subscribe_address(session, email, topics, confirmed=confirmed, schedule=schedule)
        except (InvalidSubscription, InvalidSchedule) as exc:
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
    from digest.deliver.day import run_day
    from digest.models import utcnow

    day: date = digest_date.date() if digest_date else utcnow().date()
    with _services() as services:
        summary = run_day(services, day, _celery_dispatcher(services))
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

    with _services() as services:
        report = run_tick(services, _celery_dispatcher(services))
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

    with _services() as services:
        for line in report(gather(services)):
            click.echo(line)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Proxies whose X-Forwarded-For is believed; the subscribe rate limit counts per client address.",
)
def serve(host: str, port: int, forwarded_allow_ips: str) -> None:
    """Serve the web app (subscribe, confirm, feedback, unsubscribe, preferences, archive, admin)."""
    import uvicorn

    from digest.web.app import create_app

    with _services() as services:
        app = create_app(services, _celery_dispatcher(services))
        uvicorn.run(app, host=host, port=port, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips)


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


@main.group()
def sources() -> None:
    """Configure where listings come from, and see whether each source is healthy."""


@sources.command("add")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["arxiv_api", "arxiv_rss", "hf_daily", "directory"]))
@click.option("--category", "categories", multiple=True, help="arXiv category such as cs.LG (repeatable).")
@click.option("--query", help="arXiv API search terms, e.g. 'abs:\"low-rank adaptation\"'.")
@click.option("--url", help="Override the feed or API address (a mirror, or a test server).")
@click.option("--path", help="Folder to watch (directory sources).")
@click.option("--every", "interval", type=int, help="Minutes between fetches (default depends on the kind).")
@click.option("--quiet-days", type=int, help="Days without anything new before the source is flagged stale.")
def sources_add(
    name: str,
    kind: str,
    categories: tuple[str, ...],
    query: str | None,
    url: str | None,
    path: str | None,
    interval: int | None,
    quiet_days: int | None,
) -> None:
    """Add a source; the scheduler fetches it on its own interval."""
    from digest.db import transaction
    from digest.ingest.sources import SourceError, add_source

    with _services() as services:
        try:
            with transaction(services.sessions) as session:
                source = add_source(
                    session,
                    name,
                    kind,
                    categories=categories,
                    query=query,
                    url=url,
                    path=path,
                    interval_minutes=interval,
                    quiet_days=quiet_days,
                )
                click.echo(
                    f"Added {source.name} ({source.kind}), fetched every {source.interval_minutes} min."
                )
        except SourceError as exc:
            raise click.ClickException(str(exc)) from None


@sources.command("list")
def sources_list() -> None:
    """List the configured sources."""
    from sqlalchemy import select

    from digest.models import Source

    with _services() as services, services.sessions() as session:
        rows = session.scalars(select(Source).order_by(Source.name)).all()
        if not rows:
            click.echo("No sources yet: add one with `digest sources add`.")
        for source in rows:
            config = ", ".join(f"{k}={v}" for k, v in source.config.items() if v)
            click.echo(f"{source.name}  {source.kind}  every {source.interval_minutes} min  {config}")


@sources.command("remove")
@click.argument("name")
def sources_remove(name: str) -> None:
    """Remove a source (its listings stay)."""
    from digest.db import transaction
    from digest.ingest.sources import remove_source

    with _services() as services:
        with transaction(services.sessions) as session:
            removed = remove_source(session, name)
        if not removed:
            raise click.ClickException(f"no source named {name!r}")
        click.echo(f"Removed {name}; the listings it brought stay.")


@sources.command("status")
def sources_status() -> None:
    """Each source's last success and whether it is quiet (normal) or stale / failing (look at it)."""
    from digest.ingest.health import source_health
    from digest.models import utcnow
    from digest.tables import text_table

    with _services() as services, services.sessions() as session:
        report = source_health(session, utcnow(), services.settings.extra_holidays)
    if not report:
        click.echo("No sources yet: add one with `digest sources add`.")
        return
    rows = [("source", "kind", "state", "last success", "last new", "detail")]
    for h in report:
        rows.append(
            (
                h.name,
                h.kind,
                h.state.upper() if h.state in ("stale", "failing") else h.state,
                _when(h.last_success_at),
                _when(h.last_new_at),
                h.detail,
            )
        )
    click.echo("\n".join(text_table(rows, rule=False)))
    if any(h.state in ("stale", "failing") for h in report):
        sys.exit(1)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "never"


@main.command()
@click.option(
    "--listings",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of listing dumps (default: ../shared/listings beside the project).",
)
@click.option(
    "--judgments",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder with personas.json and judgments.tsv (default: ../shared/relevance beside the project).",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The project's own labels, printed second (default: digest/evaluation_labels.tsv).",
)
@click.option("--no-own-labels", is_flag=True, help="Evaluate on the shared judgments only.")
@click.option(
    "--days", type=int, default=8, show_default=True, help="Daily batches to split the papers into."
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("var/evaluation.png"),
    show_default=True,
)
@click.option("--no-plot", is_flag=True, help="Do not write the PNG.")
@click.option("--persona", "personas", multiple=True, help="Only these personas (repeatable).")
@click.option(
    "--repeats",
    type=int,
    default=3,
    show_default=True,
    help="Replays with differently shuffled days (seeds seed, seed+1, ...), averaged.",
)
def evaluate(
    listings: Path | None,
    judgments: Path | None,
    labels: Path | None,
    no_own_labels: bool,
    days: int,
    seed: int,
    plot_path: Path,
    no_plot: bool,
    personas: tuple[str, ...],
    repeats: int,
) -> None:
    """Replay the judged sample papers as days of digests and compare ranking methods.

    "ours" is the product: each day's papers are ingested, `digest run` sends the digests to a data dir
    of its own, and the readers' votes go through the emails' links. The figures of the shared
    judgments are also saved to evaluation.json in the data dir, where the admin pages show them.
    """
    from digest.demo import DEFAULT_LISTINGS
    from digest.evaluation_figures import evaluation_path

    # The harness is tooling kept out of the package: it lives in the source checkout this package was
    # installed from (`pip install -e .`), beside `digest/`.
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "tools" / "evaluation.py").is_file() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from tools.evaluation import DEFAULT_OWN_LABELS, DEFAULT_RELEVANCE, main_evaluate
    except ImportError:
        raise click.ClickException(
            "the evaluation harness (tools/evaluation.py) is part of a source checkout, not of the "
            "installed package: run `digest evaluate` from the project's folder"
        ) from None

    try:
        results_path = evaluation_path(get_settings().data_dir)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        main_evaluate(
            listings or DEFAULT_LISTINGS,
            judgments or DEFAULT_RELEVANCE,
            None if no_own_labels else (labels or DEFAULT_OWN_LABELS),
            days=days,
            seed=seed,
            repeats=max(1, repeats),
            personas=list(personas) or None,
            plot_path=None if no_plot else plot_path,
            results_path=results_path,
            echo=click.echo,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
