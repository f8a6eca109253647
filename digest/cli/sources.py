"""`digest sources ...`: configure the scheduled sources and see their health."""

from __future__ import annotations

import sys
from typing import Any

import click

from digest.cli.common import open_services


@click.group()
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

    with open_services() as services:
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

    with open_services() as services, services.sessions() as session:
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

    with open_services() as services:
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

    with open_services() as services, services.sessions() as session:
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
