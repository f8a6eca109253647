"""The profile as the preferences page shows it, on the real listings: one entry per idea, in a reader's
words, and a mute that the next ranking obeys."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import Listing, Subscriber, Vote
from digest.rank.adjust import MUTE, adjusted
from digest.rank.learned import current_space, retrain
from digest.rank.portrait import portrait
from digest.services import Services
from digest.subscribers.feedback import record_vote
from digest.subscribers.steering import adjust_term
from digest.subscribers.subscriptions import subscribe

GENERIC = {
    "based",
    "existing",
    "introduce",
    "size",
    "model",
    "method",
    "propose",
    "data",
    "time",
    "performance",
}


def _voter(services: Services, shared_listings: list[Path]) -> tuple[int, str, list[tuple[int, str, str]]]:
    ingest_paths(services.sessions, shared_listings)
    with transaction(services.sessions) as session:
        result = subscribe(
            session, "ada@example.org", "LoRA, parameter-efficient fine-tuning", confirmed=True
        )
        public_id = session.scalars(select(Subscriber.public_id)).one()
        papers = session.execute(
            select(Listing.id, Listing.title, Listing.abstract).order_by(Listing.id)
        ).all()
    liked = [p for p in papers if re.search(r"\bLoRA\b|low-rank", p.title, re.IGNORECASE)][:3]
    disliked = [p for p in papers if "diffusion" in p.title.lower()][:2]
    assert len(liked) == 3 and len(disliked) == 2
    with transaction(services.sessions) as session:
        for paper in liked:
            record_vote(session, public_id, paper.id, Vote.MORE)
        for paper in disliked:
            record_vote(session, public_id, paper.id, Vote.LESS)
    assert retrain(services, result.subscriber_id)
    return result.subscriber_id, public_id, [*liked, *disliked]


def test_the_profile_reads_as_ideas_not_columns(services: Services, shared_listings: list[Path]) -> None:
    subscriber_id, _, voted = _voter(services, shared_listings)
    shown = portrait(services, subscriber_id)
    likes = [e.label for e in shown.likes]
    dislikes = [e.label for e in shown.dislikes]
    # The topic is one entry under its own name, holding its acronym, expansion and spelling variants.
    lora = next(e for e in shown.likes if e.label == "LoRA")
    assert lora.from_topic and {"lora", "low rank", "lowrank"} <= set(lora.terms)
    lowered = [label.lower() for label in likes]
    assert not {"lora", "low rank", "low-rank", "rank", "low", "low-rank adaptation"} & set(lowered[1:])
    # Words most papers use are no one's interest, and every word shown is spelled as the papers spell it.
    assert not GENERIC & {label.lower() for label in likes + dislikes}
    corpus = (
        " ".join(f"{p.title} {p.abstract}" for p in voted).lower() + " lora parameter-efficient fine-tuning"
    )
    for label in likes + dislikes:
        for word in label.lower().split(" "):
            assert re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", corpus), (word, label)
    assert dislikes and shown.dislikes[0].share == 1.0 and shown.dislikes[0].strength == "strong"
    assert all(e.strength in {"strong", "some", "slight"} for e in shown.likes + shown.dislikes)


def test_a_muted_term_outweighs_the_votes_that_pulled_it_in(
    services: Services, shared_listings: list[Path]
) -> None:
    subscriber_id, _public_id, _ = _voter(services, shared_listings)
    shown = portrait(services, subscriber_id)
    entry = next(e for e in shown.likes if not e.from_topic)
    with transaction(services.sessions) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        adjust_term(session, subscriber, entry.label, MUTE, entry.steered_terms)
    after = portrait(services, subscriber_id)
    assert entry.label not in [e.label for e in after.likes]
    assert [(e.label, e.adjustment) for e in after.adjusted] == [(entry.label, MUTE)]

    space = current_space(services, refit=False)
    term_doc = space.transform([entry.steered_terms[0]])
    base = space.keyword_vector(["LoRA", "parameter-efficient fine-tuning"])
    stored = after.adjustments
    assert (term_doc @ base.T).toarray()[0, 0] >= 0
    assert (term_doc @ adjusted(base, stored).T).toarray()[0, 0] < 0
