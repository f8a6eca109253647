"""What the pages show a subscriber about themselves: suggested topics and the terms their profile learned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import Listing, Subscriber, Vote, utcnow
from digest.rank.learned import retrain
from digest.rank.portrait import portrait
from digest.services import Services
from digest.subscribers.feedback import record_vote
from digest.subscribers.subscriptions import subscribe
from digest.subscribers.suggestions import phrases_of, suggest
from tests.support.daily import LORA, OTHER, ingest


def test_suggestions_come_from_the_phrases_titles_use(
    services: Services, shared_listings: list[Path]
) -> None:
    ingest_paths(services.sessions, shared_listings)
    diffusion = [s.topic for s in suggest(services, "diffus")]
    starting = [s for s in diffusion if s.startswith("diffus")]
    assert diffusion[: len(starting)] == starting  # phrases that start so come before inner matches
    assert "diffusion models" in starting and all("diffus" in s for s in diffusion)
    assert any(" " in s.topic for s in suggest(services, "language"))  # phrases, not only words
    assert suggest(services, "d") == [] and suggest(services, "  ") == []
    assert suggest(services, "zzzzqqq") == []
    assert (services.settings.data_dir / "models" / "vocabulary.json").exists()


def test_phrases_skip_stop_words_at_their_edges() -> None:
    found = phrases_of("Scaling Laws for the Training of Diffusion Models")
    assert {"scaling laws", "diffusion models", "training of diffusion models"} <= found
    assert not {"training", "scaling", "diffusion"} & found, "a lone everyday word is not a topic"
    assert not any(p.startswith(("for ", "the ", "of ")) or p.endswith((" the", " of")) for p in found)


def test_learned_terms_name_what_votes_pulled_in_and_pushed_out(services: Services, tmp_path: Path) -> None:
    ingest(services, tmp_path, LORA + OTHER, utcnow() - timedelta(hours=1))
    with transaction(services.sessions) as session:
        result = subscribe(session, "voter@example.org", "graph networks", confirmed=True)
        public_id = session.scalars(select(Subscriber.public_id)).one()
    before = portrait(services, result.subscriber_id)
    assert before.votes == 0 and before.dislikes == [] and before.votes_until_model == 4
    assert [e.label for e in before.likes] == ["graph networks"] and before.likes[0].from_topic

    with services.sessions() as session:
        ids = {title: i for i, title in session.execute(select(Listing.id, Listing.title))}
    with transaction(services.sessions) as session:
        for title, _ in LORA:
            record_vote(session, public_id, ids[title], Vote.MORE)
        for title, _ in OTHER:
            record_vote(session, public_id, ids[title], Vote.LESS)
    assert retrain(services, result.subscriber_id)

    after = portrait(services, result.subscriber_id)
    pulling = [e.label.lower() for e in after.likes]
    pushing = [e.label.lower() for e in after.dislikes]
    assert after.votes == 5 and after.model_started and after.votes_until_model == 0
    assert any("lora" in t or "adapter" in t or "low-rank" in t or "rank" in t for t in pulling[:6]), pulling
    assert any(t in pushing for t in ("protein", "traffic", "road", "folding", "congestion")), pushing
    assert all(e.weight > 0 for e in after.likes) and all(e.weight < 0 for e in after.dislikes)
    # Each side on its own scale: the strongest "less" entry has a full bar, however weak next to the likes.
    assert after.dislikes[0].share == 1.0 and after.likes[0].share == 1.0
