"""Subscribers' profiles in the database and the feature space on disk: loading, refitting, retraining.

`digest.rank.features` and `digest.rank.profile` hold the maths; this module decides when it runs. The
feature space is refit when the corpus has grown by a tenth since the last fit (cost per run at most), and
a subscriber's learned model is retrained when their votes change (a Celery task queued by the vote),
never every day for everyone.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.db import transaction
from digest.models import Feedback, Listing, SubscriberModel, Vote, utcnow
from digest.rank.features import N_FEATURES, FeatureSpace, listing_text
from digest.rank.profile import Votes, can_learn, train_learned
from digest.services import Services

log = logging.getLogger(__name__)

REFIT_GROWTH = 0.10
BACKGROUND_PAPERS = 2000
# Up to this many subscribers, votes are selected by subscriber id (a ranking block is 5,000).
VOTES_BY_ID_UP_TO = 5000


def current_space(services: Services, *, force: bool = False, refit: bool = True) -> FeatureSpace:
    """The saved space, refit first when there is none or the corpus has grown by REFIT_GROWTH.

    `refit=False` takes a saved space however old: a web page must not spend seconds refitting.
    """
    directory = services.settings.data_dir / "models"
    space = None if force else _load(directory)
    if space is not None and not refit:
        return space
    with services.sessions() as session:
        stored = int(session.scalar(select(func.count()).select_from(Listing)) or 0)
        if space is not None and stored <= space.n_docs * (1 + REFIT_GROWTH):
            return space
        texts = (
            listing_text(title, abstract)
            for title, abstract in session.execute(
                select(Listing.title, Listing.abstract).order_by(Listing.id).execution_options(yield_per=2000)
            )
        )
        space = FeatureSpace.fit(texts)
    space.save(directory)
    log.info("feature space refit on %d listings (version %s)", space.n_docs, space.version)
    return space


_loaded: dict[Path, tuple[str, FeatureSpace]] = {}


def _load(directory: Path) -> FeatureSpace | None:
    """The saved space, read from disk only when `current` names another file than last time: a worker
    retraining on every vote would otherwise decompress the same IDF array for each one."""
    pointer = directory / "current"
    if not pointer.exists():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    cached = _loaded.get(directory)
    if cached is not None and cached[0] == name:
        return cached[1]
    space = FeatureSpace.load(directory)
    if space is not None:
        _loaded[directory] = (name, space)
    return space


def votes_key(votes: Iterable[tuple[int, int]]) -> str:
    """A fingerprint of (listing, vote) pairs: the learned model is current while this is unchanged."""
    digest = hashlib.sha256()
    for listing_id, vote in sorted(votes):
        digest.update(f"{listing_id}:{vote};".encode())
    return digest.hexdigest()


@dataclass
class SubscriberVotes:
    votes: Votes
    key: str
    liked_titles: list[tuple[str, sp.csr_matrix]]


def load_votes(
    session: Session, space: FeatureSpace, subscriber_ids: Sequence[int]
) -> dict[int, SubscriberVotes]:
    """Every given subscriber's votes as rows of the space; each voted paper is vectorised once."""
    by_subscriber: dict[int, list[tuple[int, int]]] = defaultdict(list)
    wanted = set(subscriber_ids)
    query = select(Feedback.subscriber_id, Feedback.listing_id, Feedback.vote)
    if len(wanted) <= VOTES_BY_ID_UP_TO:
        # One subscriber, or one ranking block, reads only its own votes; the block size keeps a run from
        # scanning every vote once per block.
        query = query.where(Feedback.subscriber_id.in_(sorted(wanted)))
    for subscriber_id, listing_id, vote in session.execute(query):
        if subscriber_id in wanted:
            by_subscriber[subscriber_id].append((listing_id, vote))
    listing_ids = sorted({listing_id for pairs in by_subscriber.values() for listing_id, _ in pairs})
    texts: dict[int, tuple[str, str]] = {}
    for start in range(0, len(listing_ids), 500):
        chunk = listing_ids[start : start + 500]
        for listing_id, title, abstract in session.execute(
            select(Listing.id, Listing.title, Listing.abstract).where(Listing.id.in_(chunk))
        ):
            texts[listing_id] = (title, abstract)
    order = [i for i in listing_ids if i in texts]
    matrix = _voted_rows(space, order, texts) if order else None
    row_of = {listing_id: row for row, listing_id in enumerate(order)}

    result: dict[int, SubscriberVotes] = {}
    for subscriber_id, pairs in by_subscriber.items():
        present = [(listing_id, vote) for listing_id, vote in pairs if listing_id in row_of]
        liked = [row_of[i] for i, v in present if v == Vote.MORE]
        disliked = [row_of[i] for i, v in present if v == Vote.LESS]
        assert matrix is not None
        votes = Votes(matrix[liked], matrix[disliked])
        titles = [(texts[i][0], matrix[row_of[i]]) for i, v in present if v == Vote.MORE]
        result[subscriber_id] = SubscriberVotes(votes, votes_key(present), titles)
    return result


# Voted papers' rows kept by a worker between votes: each vote retrains from all the subscriber's votes.
VOTED_ROWS_KEPT = 20_000
_voted: OrderedDict[tuple[str, int], tuple[tuple[str, str], sp.csr_matrix]] = OrderedDict()


def _voted_rows(
    space: FeatureSpace, order: Sequence[int], texts: dict[int, tuple[str, str]]
) -> sp.csr_matrix:
    """The rows of `order`'s papers, vectorising only those not kept since an earlier vote (a paper
    whose text has changed since, by a new version, is vectorised again)."""
    rows: dict[int, sp.csr_matrix] = {}
    missing = []
    for listing_id in order:
        kept = _voted.get((space.version, listing_id))
        if kept is not None and kept[0] == texts[listing_id]:
            _voted.move_to_end((space.version, listing_id))
            rows[listing_id] = kept[1]
        else:
            missing.append(listing_id)
    if missing:
        fresh = space.transform(listing_text(*texts[i]) for i in missing)
        for position, listing_id in enumerate(missing):
            rows[listing_id] = fresh[position]
            _voted[(space.version, listing_id)] = (texts[listing_id], rows[listing_id])
        while len(_voted) > VOTED_ROWS_KEPT:
            _voted.popitem(last=False)
    return sp.vstack([rows[i] for i in order], format="csr")


_backgrounds: dict[tuple[str, str], tuple[int, sp.csr_matrix]] = {}


def background_sample(session: Session, space: FeatureSpace, size: int = BACKGROUND_PAPERS) -> sp.csr_matrix:
    """Recent papers, the weak negatives a learned model is trained against.

    Every vote retrains its subscriber's model, so a worker keeps the vectorised sample until a newer
    paper is stored or the space is refit, instead of re-reading 2,000 abstracts for each vote.
    """
    newest = session.scalar(select(func.max(Listing.id)))
    if newest is None:
        return sp.csr_matrix((0, N_FEATURES), dtype=np.float32)
    key = (str(session.get_bind().engine.url), space.version)
    cached = _backgrounds.get(key)
    if size == BACKGROUND_PAPERS and cached is not None and cached[0] == newest:
        return cached[1]
    rows = session.execute(
        select(Listing.title, Listing.abstract).order_by(Listing.id.desc()).limit(size)
    ).all()
    matrix = space.transform(listing_text(title, abstract) for title, abstract in rows)
    if size == BACKGROUND_PAPERS:
        _backgrounds.clear()
        _backgrounds[key] = (int(newest), matrix)
    return matrix


def _pack(vector: sp.csr_matrix) -> tuple[bytes, bytes]:
    return vector.indices.astype(np.int32).tobytes(), vector.data.astype(np.float32).tobytes()


def unpack(columns: bytes, weights: bytes) -> sp.csr_matrix:
    indices = np.frombuffer(columns, dtype=np.int32)
    data = np.frombuffer(weights, dtype=np.float32)
    return sp.csr_matrix((data, indices, np.array([0, len(indices)])), shape=(1, N_FEATURES))


def learned_vectors(session: Session, current_keys: dict[int, str]) -> dict[int, sp.csr_matrix]:
    """Stored models whose votes are still the subscriber's current ones."""
    found = {}
    for model in session.scalars(
        select(SubscriberModel).where(SubscriberModel.subscriber_id.in_(list(current_keys)))
    ):
        if model.votes_key == current_keys.get(model.subscriber_id):
            found[model.subscriber_id] = unpack(model.columns, model.weights)
    return found


def store_learned(session: Session, subscriber_id: int, key: str, vector: sp.csr_matrix) -> None:
    columns, weights = _pack(vector)
    existing = session.get(SubscriberModel, subscriber_id)
    if existing is None:
        session.add(
            SubscriberModel(subscriber_id=subscriber_id, votes_key=key, columns=columns, weights=weights)
        )
    else:
        existing.votes_key, existing.columns, existing.weights = key, columns, weights
        existing.trained_at = utcnow()


def retrain(services: Services, subscriber_id: int) -> bool:
    """Bring one subscriber's learned model up to date with their votes; False when they have too few."""
    space = current_space(services)
    with transaction(services.sessions) as session:
        loaded = load_votes(session, space, [subscriber_id]).get(subscriber_id)
        if loaded is None or not can_learn(loaded.votes):
            existing = session.get(SubscriberModel, subscriber_id)
            if existing is not None:
                session.delete(existing)
            return False
        current = learned_vectors(session, {subscriber_id: loaded.key})
        if subscriber_id in current:
            return True
        vector = train_learned(loaded.votes, background_sample(session, space), seed=subscriber_id)
        if vector is None:
            return False
        store_learned(session, subscriber_id, loaded.key, vector)
    return True
