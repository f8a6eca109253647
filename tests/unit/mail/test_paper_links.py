"""Where a digest's titles lead and what each paper's meta line says, from stored papers to the sent email.

Papers are stored as rows, loaded the way the send path loads them (`digest.deliver.batch`) and the way
the archive page does (ORM rows), and rendered by the real templates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from digest.db import transaction
from digest.deliver.batch import load_batch
from digest.mail.digest_email import digest_context, paper_details, render_digest
from digest.models import Digest, DigestItem, Listing, Subscriber, SubscriberStatus
from digest.services import Services
from tests.unit.mail.test_email_html import Document

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

PAPERS: dict[str, dict[str, Any]] = {
    # As the store keeps an arXiv paper: the URL rewritten to the abs page, the id versionless.
    "arxiv": {
        "title": "Sparse low-rank adapters",
        "url": "https://arxiv.org/abs/2611.01234",
        "arxiv_id": "2611.01234",
        "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
        "categories": ["cs.LG", "cs.CL"],
        "published": date(2026, 11, 20),
        "links": {"arxiv": "https://arxiv.org/abs/2611.01234"},
    },
    "old_style": {
        "title": "An old-style arXiv id",
        "url": "https://arxiv.org/abs/hep-th/9901001",
        "arxiv_id": "hep-th/9901001",
        "categories": ["hep-th"],
    },
    # From a JSON Lines dump: no URL, no id, nothing but the text.
    "bare": {"title": "A paper with nothing but a title", "url": None},
    "elsewhere": {
        "title": "Published elsewhere, with a PDF",
        "url": "https://journal.example.org/article/7",
        "links": {"pdf": "https://journal.example.org/article/7.pdf"},
        "published": date(2026, 10, 2),
    },
    # What no link may carry: a stored URL or PDF link that is not http(s).
    "hostile": {
        "title": "A paper whose links are not web addresses",
        "url": "javascript:alert(1)",
        "links": {"pdf": "file:///etc/passwd"},
        "categories": [""],
    },
}


@pytest.fixture
def sent(services: Services) -> dict[str, Any]:
    """One stored digest holding every paper above, with the ids of its rows."""
    with transaction(services.sessions) as session:
        reader = Subscriber(
            email="reader@example.org", topics=["lora"], status=SubscriberStatus.ACTIVE, confirmed_at=T0
        )
        session.add(reader)
        listings = {}
        for key, fields in PAPERS.items():
            listing = Listing(
                title_key=key,
                abstract=f"The abstract of {fields['title']}.",
                source="test",
                first_seen_at=T0,
                updated_at=T0,
                **fields,
            )
            listings[key] = listing
            session.add(listing)
        session.flush()
        row = Digest(subscriber_id=reader.id, digest_date=T0.date(), candidates_until=T0)
        session.add(row)
        session.flush()
        for rank, listing in enumerate(listings.values(), start=1):
            session.add(
                DigestItem(
                    digest_id=row.id,
                    subscriber_id=reader.id,
                    listing_id=listing.id,
                    rank=rank,
                    score=1.0 / rank,
                    reason="Matches your topics: lora",
                )
            )
        ids = {key: listing.id for key, listing in listings.items()}
        digest_id = row.id
    return {"digest_id": digest_id, "listing_ids": ids}


def batch_entries(services: Services, digest_id: int) -> dict[str, dict[str, Any]]:
    (row,) = load_batch(services, [digest_id])
    items = digest_context(services, row)["items"]
    assert isinstance(items, list)
    return dict(zip(PAPERS, items, strict=True))


def test_every_title_links_to_the_paper_or_to_the_services_page_of_it(
    services: Services, sent: dict[str, Any]
) -> None:
    entries = batch_entries(services, sent["digest_id"])
    ids = sent["listing_ids"]
    assert entries["arxiv"]["url"] == "https://arxiv.org/abs/2611.01234"
    assert entries["elsewhere"]["url"] == "https://journal.example.org/article/7"
    assert entries["bare"]["url"] == f"https://digest.example.org/papers/{ids['bare']}"
    # A URL that is not http(s) is never linked: the title goes to our page instead.
    assert entries["hostile"]["url"] == f"https://digest.example.org/papers/{ids['hostile']}"


def test_the_meta_line_names_what_is_known_and_leaves_out_the_rest(
    services: Services, sent: dict[str, Any]
) -> None:
    entries = batch_entries(services, sent["digest_id"])
    details = {
        key: {k: entries[key][k] for k in ("pdf_url", "arxiv_id", "category", "published")} for key in PAPERS
    }
    assert details["arxiv"] == {
        "pdf_url": "https://arxiv.org/pdf/2611.01234",
        "arxiv_id": "2611.01234",
        "category": "cs.LG",
        "published": date(2026, 11, 20),
    }
    assert details["old_style"]["pdf_url"] == "https://arxiv.org/pdf/hep-th/9901001"
    assert details["elsewhere"] == {
        "pdf_url": "https://journal.example.org/article/7.pdf",
        "arxiv_id": None,
        "category": None,
        "published": date(2026, 10, 2),
    }
    assert details["bare"] == dict.fromkeys(("pdf_url", "arxiv_id", "category", "published"))
    assert details["hostile"] == dict.fromkeys(("pdf_url", "arxiv_id", "category", "published"))


def test_the_send_path_and_the_archive_page_show_the_same_papers(
    services: Services, sent: dict[str, Any]
) -> None:
    (batch_row,) = load_batch(services, [sent["digest_id"]])
    with services.sessions() as session:
        orm_row = session.get(Digest, sent["digest_id"])
        assert orm_row is not None
        from_orm = digest_context(services, orm_row)
    assert digest_context(services, batch_row) == from_orm


def test_an_arxiv_id_that_is_not_one_makes_no_pdf_link() -> None:
    listing = Listing(arxiv_id="2611.01234/../../evil", categories=[], links={}, published=None)
    assert paper_details(listing)["pdf_url"] is None and paper_details(listing)["arxiv_id"] is None


def sent_message(services: Services, digest_id: int) -> EmailMessage:
    (row,) = load_batch(services, [digest_id])
    message = message_from_bytes(render_digest(services, row).data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_sent_email_links_titles_and_pdfs_in_both_parts(services: Services, sent: dict[str, Any]) -> None:
    message = sent_message(services, sent["digest_id"])
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    document = Document(html)
    titles = [a for a in document.all("a") if a.ancestors[-1].tag == "h2"]
    ids = sent["listing_ids"]
    assert [a.attrs["href"] for a in titles] == [
        "https://arxiv.org/abs/2611.01234",
        "https://arxiv.org/abs/hep-th/9901001",
        f"https://digest.example.org/papers/{ids['bare']}",
        "https://journal.example.org/article/7",
        f"https://digest.example.org/papers/{ids['hostile']}",
    ]
    assert [a.attrs["href"] for a in document.links("PDF")] == [
        "https://arxiv.org/pdf/2611.01234",
        "https://arxiv.org/pdf/hep-th/9901001",
        "https://journal.example.org/article/7.pdf",
    ]
    assert not any(a.attrs["href"].startswith(("javascript:", "file:")) for a in document.all("a"))
    body = " ".join(document.all("body")[0].text.split())
    assert (
        "Ada Lovelace, Alan Turing, Grace Hopper et al. · arXiv:2611.01234 · cs.LG · 20 Nov 2026 · PDF"
        in body
    )
    assert "Why: Matches your topics: lora" in body
    # The text part carries the same links, each on a line of its own.
    lines = [line.strip() for line in text.splitlines()]
    assert f"https://digest.example.org/papers/{ids['bare']}" in lines
    assert "PDF: https://arxiv.org/pdf/2611.01234" in lines
    assert "PDF: https://journal.example.org/article/7.pdf" in lines
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al. · arXiv:2611.01234 · cs.LG · 20 Nov 2026" in lines
    assert "javascript:" not in text and "file:" not in text


def test_paper_url_names_the_public_paper_page(services: Services) -> None:
    assert services.links.paper_url(42) == "https://digest.example.org/papers/42"
    for bad in (0, -1, True, "42"):
        with pytest.raises(ValueError, match="listing id"):
            services.links.paper_url(bad)  # type: ignore[arg-type]
