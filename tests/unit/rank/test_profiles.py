"""When models are (re)trained and refit: on votes changing, and on the corpus growing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import Listing, Subscriber, SubscriberModel, Vote
from digest.rank.features import FeatureSpace
from digest.rank.learned import current_space, learned_vectors, load_votes, retrain
from digest.services import Services
from digest.subscribers.feedback import record_vote, restore_vote
from digest.subscribers.subscriptions import subscribe

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
TOPICS = ["graph networks", "molecules", "protein design", "diffusion images", "speech codecs", "robot arms"]


def ingest(services: Services, tmp_path: Path, count: int, name: str) -> None:
    path = tmp_path / name
    path.write_text(
        "".join(
            json.dumps(
                {"title": f"{TOPICS[n % 6].title()} study {name} {n}", "abstract": f"About {TOPICS[n % 6]}."}
            )
            + "\n"
            for n in range(count)
        ),
        encoding="utf-8",
    )
    ingest_paths(services.sessions, [path], now=T0)


def test_a_learned_model_follows_the_votes(services: Services, tmp_path: Path) -> None:
    ingest(services, tmp_path, 30, "a.jsonl")
    with transaction(services.sessions) as session:
        result = subscribe(session, "voter@example.org", "graph networks", confirmed=True)
        public_id = session.get_one(Subscriber, result.subscriber_id).public_id
        ids = session.scalars(select(Listing.id).order_by(Listing.id)).all()
    subscriber_id = result.subscriber_id

    with transaction(services.sessions) as session:
        record_vote(session, public_id, ids[0], Vote.MORE)
        record_vote(session, public_id, ids[1], Vote.LESS)
    assert retrain(services, subscriber_id) is False, "two votes are not enough to learn from"

    with transaction(services.sessions) as session:
        record_vote(session, public_id, ids[6], Vote.MORE)
        record_vote(session, public_id, ids[7], Vote.LESS)
    assert retrain(services, subscriber_id) is True
    space = current_space(services)
    with services.sessions() as session:
        key = load_votes(session, space, [subscriber_id])[subscriber_id].key
        assert subscriber_id in learned_vectors(session, {subscriber_id: key})

    with transaction(services.sessions) as session:
        record_vote(session, public_id, ids[12], Vote.MORE)
    with services.sessions() as session:
        new_key = load_votes(session, space, [subscriber_id])[subscriber_id].key
        assert new_key != key and learned_vectors(session, {subscriber_id: new_key}) == {}, (
            "stale after a vote"
        )
    assert retrain(services, subscriber_id) is True
    with services.sessions() as session:
        assert subscriber_id in learned_vectors(session, {subscriber_id: new_key})

    with transaction(services.sessions) as session:
        for listing_id in (ids[6], ids[7], ids[12]):
            restore_vote(session, public_id, listing_id, None)
    assert retrain(services, subscriber_id) is False
    with services.sessions() as session:
        assert session.get(SubscriberModel, subscriber_id) is None, "too few votes left: the model goes"


def test_the_space_is_refit_only_when_the_corpus_has_grown(services: Services, tmp_path: Path) -> None:
    ingest(services, tmp_path, 50, "a.jsonl")
    first = current_space(services)
    assert first.n_docs == 50
    ingest(services, tmp_path, 3, "b.jsonl")
    assert current_space(services).version == first.version, "3 more papers do not justify a refit"
    ingest(services, tmp_path, 10, "c.jsonl")
    grown = current_space(services)
    assert grown.n_docs == 63 and grown.version != first.version
    saved = FeatureSpace.load(services.settings.data_dir / "models")
    assert saved is not None and saved.version == grown.version
