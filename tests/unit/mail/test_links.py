from __future__ import annotations

from pathlib import Path

import pytest
from itsdangerous import URLSafeSerializer

from digest.config import Settings
from digest.mail.links import BadLink, Links
from digest.models import Vote


def test_tokens_round_trip_and_carry_no_address(settings: Settings) -> None:
    links = Links(settings)
    token = links.feedback_token("pub123", 42, Vote.LESS)
    claim = links.read_feedback(token)
    assert (claim.public_id, claim.listing_id, claim.vote) == ("pub123", 42, Vote.LESS)
    assert links.read_undo(links.undo_token("pub123", 42, None)).restore is None
    assert links.read_unsubscribe(links.unsubscribe_token("pub123")) == "pub123"
    assert links.read_confirm(links.confirm_token("pub123")) == "pub123"
    assert links.unsubscribe_url("pub123").startswith("https://digest.example.org/unsubscribe/")


def test_tampered_and_cross_purpose_tokens_are_rejected(settings: Settings) -> None:
    links = Links(settings)
    token = links.feedback_token("pub123", 42, Vote.MORE)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(BadLink):
        links.read_feedback(flipped)
    with pytest.raises(BadLink):
        links.read_unsubscribe(token)
    with pytest.raises(BadLink):
        links.read_feedback(links.unsubscribe_token("pub123"))
    with pytest.raises(BadLink):
        links.read_preferences("not-a-token")


def test_tokens_from_another_secret_are_rejected(settings: Settings, tmp_path: Path) -> None:
    from tests.support.env import make_settings

    other = Links(make_settings(tmp_path, DIGEST_SECRET_KEY="a-completely-different-secret"))
    with pytest.raises(BadLink):
        Links(settings).read_unsubscribe(other.unsubscribe_token("pub123"))


def test_minted_tokens_are_the_ones_itsdangerous_makes_so_sent_links_keep_working(settings: Settings) -> None:
    links = Links(settings)
    key = settings.secret_key
    public_id = "Zq3-x_9AbCdEfGh"
    for listing_id, vote in [(1, Vote.MORE), (987_654_321, Vote.LESS)]:
        expected = URLSafeSerializer(key, salt="digest.subscribers.feedback").dumps(
            [public_id, listing_id, int(vote)]
        )
        assert links.feedback_token(public_id, listing_id, vote) == expected
    assert links.unsubscribe_token(public_id) == URLSafeSerializer(key, salt="digest.unsubscribe").dumps(
        public_id
    )
    # A value long and repetitive enough that itsdangerous compresses it takes the same path here.
    long_id = "a" * 300
    assert links.archive_token(long_id, 5) == URLSafeSerializer(key, salt="digest.archive").dumps(
        [long_id, 5]
    )
    assert links.archive_token(long_id, 5).startswith(".")
    assert links.read_archive(links.archive_token(long_id, 5)) == (long_id, 5)
