"""A muted or boosted term changes the next digest, through the run that sends it."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select

from digest.db import transaction
from digest.deliver.day import run_day
from digest.models import Subscriber
from digest.rank.adjust import BOOST, MUTE
from digest.services import Services
from digest.subscribers.steering import adjust_term
from tests.support.daily import DAY, LORA, OTHER, T0, InlineDispatcher, add_subscriber, ingest


def _texts(services: Services) -> dict[str, str]:
    found = {}
    for eml in services.settings.outbox_dir.glob("*.eml"):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found[str(message["To"])] = body.get_content()
    return found


def test_a_mute_takes_a_paper_out_and_a_boost_brings_one_in(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA + OTHER, T0 - timedelta(hours=2))
    for email in ("plain@example.org", "muted@example.org", "boosted@example.org"):
        add_subscriber(services, email, "LoRA")
    with transaction(services.sessions) as session:
        by_email = {s.email: s for s in session.scalars(select(Subscriber))}
        adjust_term(session, by_email["muted@example.org"], "vision", MUTE, ["vision", "vision transformer"])
        adjust_term(
            session, by_email["boosted@example.org"], "protein", BOOST, ["protein", "protein folding"]
        )

    summary = run_day(services, DAY, InlineDispatcher(services), now=T0)
    assert summary.sent == 3
    texts = _texts(services)
    vision, protein = "LoRA for vision transformers", "Protein folding with attention"
    assert vision in texts["plain@example.org"] and protein not in texts["plain@example.org"]
    assert vision not in texts["muted@example.org"]
    assert all(title in texts["muted@example.org"] for title, _ in LORA if title != vision)
    assert protein in texts["boosted@example.org"] and vision in texts["boosted@example.org"]


def test_a_muted_typed_topic_gets_no_place_and_is_not_called_quiet(
    any_services: Services, tmp_path: Path
) -> None:
    from digest.models import Digest

    services = any_services
    ingest(services, tmp_path, LORA + OTHER, T0 - timedelta(hours=2))
    add_subscriber(services, "both@example.org", "LoRA, protein folding")
    with transaction(services.sessions) as session:
        reader = session.scalars(select(Subscriber)).one()
        adjust_term(session, reader, "protein folding", MUTE, ["protein", "folding", "protein folding"])
    assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 1
    text = _texts(services)["both@example.org"]
    assert "Protein folding with attention" not in text and "Nothing new" not in text
    with services.sessions() as session:
        assert session.scalars(select(Digest.quiet_topics)).one() is None
