from __future__ import annotations

from pathlib import Path

import pytest

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
