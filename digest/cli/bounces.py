"""`digest bounces`: read the bounce mailbox once, as the beat does every five minutes."""

from __future__ import annotations

import click

from digest.cli.common import open_services


@click.command()
def bounces() -> None:
    """Act on the bounces and complaints waiting in DIGEST_BOUNCE_MAILBOX: one line per message.

    Fails only when the mailbox cannot be read; a message that could not be dealt with is reported and
    left where it is for the next run.
    """
    from digest.bounces.mailbox import MailboxError
    from digest.bounces.processor import process_bounces

    with open_services() as services:
        try:
            run = process_bounces(services)
        except MailboxError as exc:
            raise click.ClickException(f"cannot read the bounce mailbox: {exc}") from None
        for outcome in run.outcomes:
            click.echo(outcome.line())
        click.echo(run.summary())
