"""The identity and merge rules: one listing per paper across sources, versions and spellings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from digest.db import transaction
from digest.deliver.day import plan_day
from digest.deliver.sending import send_digests
from digest.ingest.formats import ParsedListing
from digest.ingest.store import StoreCounts, identify, store_batch
from digest.models import DigestItem, Listing
from digest.services import Services
from digest.subscribers.subscriptions import subscribe

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def paper(**overrides: Any) -> ParsedListing:
    fields: dict[str, Any] = {
        "line": 1,
        "title": "Folding Adapters into Frozen Transformers",
        "abstract": "We fold low-rank adapters into frozen weights after training.",
    }
    fields.update(overrides)
    return ParsedListing(**fields)


def store(services: Services, source: str, *papers: ParsedListing, at: datetime = T0) -> StoreCounts:
    with transaction(services.sessions) as session:
        batch = []
        for p in papers:
            incoming = identify(p)
            assert not hasattr(incoming, "message"), incoming
            batch.append(incoming)
        return store_batch(session, batch, source, at)  # type: ignore[arg-type]


def listings(services: Services) -> list[Listing]:
    with services.sessions() as session:
        return list(session.scalars(select(Listing).order_by(Listing.id)))


def test_a_new_version_updates_the_one_listing(services: Services) -> None:
    assert store(services, "arxiv-api", paper(arxiv_id="2611.01234", version=1)).new == 1
    v2 = paper(
        arxiv_id="2611.01234",
        version=2,
        title="Folding Adapters into Frozen Transformers, Revisited",
        abstract="Version two adds experiments on vision models.",
    )
    counts = store(services, "arxiv-rss", v2, at=T0 + timedelta(days=2))
    assert (counts.new, counts.updated) == (0, 1)
    (listing,) = listings(services)
    assert listing.version == 2 and listing.title.endswith("Revisited")
    assert listing.abstract.startswith("Version two")
    assert listing.first_seen_at == T0, "a new version is not a new paper"
    assert listing.updated_at == T0 + timedelta(days=2)
    assert listing.seen_in == ["arxiv-api", "arxiv-rss"]

    older = store(services, "mirror", paper(arxiv_id="2611.01234", version=1, title="Old title"))
    assert (older.updated, older.duplicate) == (0, 1), "only the list of sources grows"
    (listing,) = listings(services)
    assert listing.title.endswith("Revisited"), "an older version never overwrites a newer one"
    assert listing.seen_in == ["arxiv-api", "arxiv-rss", "mirror"]


def test_arxiv_and_hugging_face_reports_of_one_paper_merge(services: Services) -> None:
    store(
        services,
        "arxiv-api",
        paper(
            arxiv_id="2611.01234",
            version=1,
            categories=["cs.LG", "cs.CL"],
            authors=["Ada Lovelace", "Alan Turing"],
            links={"arxiv": "https://arxiv.org/abs/2611.01234", "pdf": "https://arxiv.org/pdf/2611.01234v1"},
            url="https://arxiv.org/abs/2611.01234",
        ),
    )
    counts = store(
        services,
        "hf-daily",
        paper(
            title="folding adapters into frozen transformers",
            external_id="2611.01234",
            upvotes=57,
            authors=["A. Lovelace"],
            links={"huggingface": "https://huggingface.co/papers/2611.01234"},
            url="https://huggingface.co/papers/2611.01234",
            published=date(2026, 11, 20),
        ),
    )
    assert counts.updated == 1
    (listing,) = listings(services)
    assert listing.arxiv_id == "2611.01234" and listing.external_id is None
    assert listing.upvotes == 57
    assert listing.categories == ["cs.LG", "cs.CL"]
    assert listing.authors == ["Ada Lovelace", "Alan Turing"], "arXiv's author list is kept"
    assert set(listing.links) == {"arxiv", "pdf", "huggingface"}
    assert listing.url == "https://arxiv.org/abs/2611.01234"
    assert listing.published == date(2026, 11, 20)
    assert listing.seen_in == ["arxiv-api", "hf-daily"]


def test_the_same_title_in_other_case_and_punctuation_is_one_paper(services: Services) -> None:
    store(services, "dump.txt", paper(title="Folding Adapters into Frozen Transformers"))
    counts = store(services, "feed", paper(title="  folding adapters — into FROZEN transformers!! "))
    assert (counts.new, counts.duplicate + counts.updated) == (0, 1)
    assert len(listings(services)) == 1


def test_a_title_never_merges_papers_with_different_arxiv_ids(services: Services) -> None:
    store(services, "arxiv", paper(arxiv_id="2611.00001"))
    counts = store(services, "arxiv", paper(arxiv_id="2611.00002"))
    assert counts.new == 1
    assert [listing.arxiv_id for listing in listings(services)] == ["2611.00001", "2611.00002"]


def test_arxiv_ids_are_recognised_in_any_spelling(services: Services) -> None:
    store(services, "a", paper(external_id="arXiv:2611.01234v3"))
    store(services, "b", paper(title="Another title", url="https://arxiv.org/pdf/2611.01234v1.pdf"))
    store(services, "c", paper(title="Old style", external_id="hep-th/9901001v2"))
    store(services, "d", paper(title="Old style again", url="http://arxiv.org/abs/hep-th/9901001"))
    assert [(x.arxiv_id, x.version) for x in listings(services)] == [("2611.01234", 3), ("hep-th/9901001", 2)]


def test_a_doi_matches_when_there_is_no_arxiv_id(services: Services) -> None:
    store(services, "journal", paper(title="Journal version", doi="https://doi.org/10.1234/ABC.5"))
    counts = store(services, "other", paper(title="Preprint title differs", doi="doi:10.1234/abc.5"))
    assert counts.new == 0
    (listing,) = listings(services)
    assert listing.doi == "10.1234/abc.5"


def test_a_paper_already_sent_is_not_sent_again_when_a_new_version_arrives(services: Services) -> None:
    store(services, "arxiv", paper(arxiv_id="2611.01234", version=1), at=T0 - timedelta(hours=1))
    with transaction(services.sessions) as session:
        subscribe(session, "reader@example.org", "low-rank adapters", confirmed=True)
    first = plan_day(services, date(2026, 11, 23), now=T0)
    assert len(first.to_send) == 1
    send_digests(services, first.to_send)

    store(services, "arxiv", paper(arxiv_id="2611.01234", version=2), at=T0 + timedelta(hours=20))
    second = plan_day(services, date(2026, 11, 24), now=T0 + timedelta(days=1))
    assert second.to_send == [] and second.nothing_new == 1
    with services.sessions() as session:
        assert len(session.scalars(select(DigestItem)).all()) == 1


def test_a_replacement_of_a_paper_never_stored_is_not_news(services: Services) -> None:
    counts = store(services, "arxiv-rss", paper(arxiv_id="2611.05555", version=3, announce_type="replace"))
    assert (counts.new, counts.skipped_replacements) == (0, 1)
    assert listings(services) == []

    store(services, "arxiv-rss", paper(arxiv_id="2611.05555", version=1, announce_type="new"))
    updated = store(
        services, "arxiv-rss", paper(arxiv_id="2611.05555", version=2, announce_type="replace-cross")
    )
    assert updated.updated == 1
    assert listings(services)[0].version == 2
