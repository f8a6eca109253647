"""What a reader's digest would hold now: the first-day preview, ranked by the run's own `Ranker`.

A preview is asked for by one person at a time, but building a ranker vectorises the whole window; one is
kept per process until a newer paper arrives, the space is refit, or the window's day changes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from digest.models import Listing, utcnow
from digest.rank.learned import current_space
from digest.rank.ranker import Candidate, Pick, Ranker
from digest.services import Services

_lock = threading.Lock()
_kept: list[tuple[tuple[object, ...], Ranker]] = []


def preview(
    services: Services,
    subscriber_id: int,
    topics: list[str],
    *,
    size: int = 5,
    adjustments: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> list[Pick]:
    """The picks a first digest sent now would carry (trending left out), best first."""
    now = now or utcnow()
    window_start = now - timedelta(days=services.settings.first_digest_lookback_days)
    with services.sessions() as session:
        newest = session.scalar(select(func.max(Listing.id)))
        if newest is None:
            return []
        space = current_space(services, refit=False)
        key = (services.settings.database_url, space.version, newest, window_start.date())
        with _lock:
            ranker = _kept[0][1] if _kept and _kept[0][0] == key else None
        if ranker is None:
            ranker = Ranker(services, session, window_start, now, refit_space=False)
            with _lock:
                _kept[:] = [(key, ranker)]
        candidate = Candidate(
            digest_id=0,
            subscriber_id=subscriber_id,
            topics=topics,
            size=size,
            since=window_start,
            show_trending=False,
            adjustments=adjustments or None,
        )
        return ranker.rank(session, [candidate]).get(subscriber_id, [])
