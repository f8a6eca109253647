"""The digest email of one digest row: its template context, and the rendered mail within size limits.

The context is what the email and the archived web copy of it show, so both are built from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from digest.bounces.verp import return_path
from digest.deliver.schedule import describe, schedule_of
from digest.mail.compose import HTML_LIMIT_BYTES, OutgoingMail, compose
from digest.mail.render import SNIPPET_CHARS, RenderedEmail, Renderer, is_web_url, meta_line, trim_abstract
from digest.models import Cadence, Digest, Listing, SubscriberStatus, Vote
from digest.services import Services


@dataclass(frozen=True, slots=True)
class Paper:
    """The `Listing` attributes a digest shows, under the same names, so the context reads either."""

    title: str
    url: str | None
    abstract: str
    authors: list[str]
    arxiv_id: str | None = None
    categories: list[str] = field(default_factory=list)
    published: date | None = None
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Item:
    listing_id: int
    section: str
    reason: str
    listing: Paper


@dataclass(frozen=True, slots=True)
class Reader:
    id: int
    email: str
    public_id: str
    topics: list[str]
    status: SubscriberStatus
    cadence: Cadence = Cadence.DAILY
    send_hour: int = 6
    timezone: str = "UTC"
    weekly_day: int = 0


@dataclass(slots=True)
class DigestToSend:
    """The attributes of a `Digest` row that rendering and sending read, under the same names: the send
    path builds these from plain queries (`digest.deliver.batch`), the web pages pass ORM rows."""

    id: int
    subscriber_id: int
    digest_date: date
    message_id: str | None
    attempts: int
    subscriber: Reader
    items: list[Item] = field(default_factory=list)
    error: str | None = None
    quiet_topics: list[str] = field(default_factory=list)


# What may follow https://arxiv.org/pdf/: a versionless id as the store keeps it ("2401.01234",
# "hep-th/9901001"); anything else is not put into a link.
_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)?/\d{7}")
# Snippets in a digest of more than 20 papers, so the HTML stays under Gmail's clipping size.
LONG_DIGEST_SNIPPET_CHARS = 160


def paper_details(paper: Paper | Listing) -> dict[str, object]:
    """A paper's PDF link, arXiv id, primary category and date, each None when not known, and its meta line
    of what is known (but the PDF link, which the templates add)."""
    arxiv_id = paper.arxiv_id if paper.arxiv_id and _ARXIV_ID.fullmatch(paper.arxiv_id) else None
    if arxiv_id is not None:
        pdf_url: str | None = f"https://arxiv.org/pdf/{arxiv_id}"
    else:
        stored = (paper.links or {}).get("pdf")
        pdf_url = stored.strip() if is_web_url(stored) else None
    categories = paper.categories or []
    category = (str(categories[0]).strip() if categories else "") or None
    return {
        "pdf_url": pdf_url,
        "arxiv_id": arxiv_id,
        "category": category,
        "published": paper.published,
        "meta": meta_line(tuple(paper.authors or ()), arxiv_id, category, paper.published),
    }


def digest_context(services: Services, row: Digest | DigestToSend) -> dict[str, object]:
    links = services.links
    subscriber = row.subscriber
    snippet_chars = SNIPPET_CHARS if len(row.items) <= 20 else LONG_DIGEST_SNIPPET_CHARS

    def entries(section: str) -> list[dict[str, object]]:
        return [
            {
                "rank": rank,
                "title": item.listing.title,
                # Every title opens something: the paper where it lives, or else our own page of it.
                "url": (
                    item.listing.url.strip()
                    if is_web_url(item.listing.url)
                    else links.paper_url(item.listing_id)
                ),
                "abstract": trim_abstract(item.listing.abstract, snippet_chars),
                "reason": item.reason,
                "authors": list(item.listing.authors or []),
                **paper_details(item.listing),
                "more_url": links.feedback_url(subscriber.public_id, item.listing_id, Vote.MORE),
                "less_url": links.feedback_url(subscriber.public_id, item.listing_id, Vote.LESS),
            }
            for rank, item in enumerate((i for i in row.items if i.section == section), start=1)
        ]

    return {
        "subscriber_email": subscriber.email,
        "topics": list(subscriber.topics),
        # The reader's real schedule ("every Wednesday at 06:00 America/New_York"), never a fixed "daily".
        "schedule": describe(schedule_of(subscriber)),
        "digest_date": row.digest_date,
        "items": entries("picks"),
        "trending": entries("trending"),
        "quiet_topics": list(row.quiet_topics or []),
        "unsubscribe_url": links.unsubscribe_url(subscriber.public_id),
        "preferences_url": links.preferences_url(subscriber.public_id),
        "view_url": links.archive_url(subscriber.public_id, row.id),
        "archive_url": links.archive_url(subscriber.public_id),
    }


def render_digest(services: Services, row: Digest | DigestToSend) -> OutgoingMail:
    context = digest_context(services, row)
    return compose(
        services.settings,
        to=row.subscriber.email,
        rendered=render_within_limit(services.renderer, context),
        unsubscribe_url=str(context["unsubscribe_url"]),
        signer=services.dkim,
        # Kept from an earlier send whose outcome is unknown, so a resend is the same message.
        message_id=row.message_id,
        # Its own envelope sender, so a bounce mailed back days later says which digest it is about.
        return_path=return_path(services.settings, row.id),
    )


# Abstract lengths tried in turn when a digest's HTML comes out too big; 0 leaves abstracts out.
_SHORTER_ABSTRACTS = (120, 0)


def render_within_limit(renderer: Renderer, context: dict[str, object]) -> RenderedEmail:
    """Gmail clips HTML over ~102 KB and hides what follows, the unsubscribe link included; an unusually
    long digest is rendered again with shorter abstracts rather than sent clipped."""
    rendered = renderer.render("digest", context)
    for limit in _SHORTER_ABSTRACTS:
        if len(rendered.html.encode("utf-8")) <= HTML_LIMIT_BYTES:
            break
        shorter = dict(context)
        for section in ("items", "trending"):
            entries = context.get(section)
            if isinstance(entries, list):
                shorter[section] = [
                    {**e, "abstract": trim_abstract(str(e["abstract"]), limit) if limit else ""}
                    for e in entries
                ]
        rendered = renderer.render("digest", shorter)
    return rendered
