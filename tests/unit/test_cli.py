"""The `digest` command line as an operator uses it: real files, a real database, exit codes and messages."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, text

from digest.cli import main
from digest.db import make_engine
from digest.models import Listing


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DIGEST_DATA_DIR": str(tmp_path / "data"),
        "DIGEST_SECRET_KEY": "cli-test-secret-key-0123456789",
        "DIGEST_BASE_URL": "https://digest.example.org",
    }


def digest(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def listing_count(env: dict[str, str]) -> int:
    engine = make_engine(f"sqlite:///{env['DIGEST_DATA_DIR']}/digest.sqlite3")
    with engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(Listing))
    engine.dispose()
    return int(count or 0)


def test_help_lists_every_command(env: dict[str, str]) -> None:
    result = digest(env, "--help")
    assert result.exit_code == 0
    for command in ("init-db", "ingest", "subscribe", "run", "serve", "demo"):
        assert command in result.output


def test_commands_refuse_a_missing_or_old_schema(env: dict[str, str]) -> None:
    missing = digest(env, "run")
    assert missing.exit_code == 1
    assert "has no schema; run `digest init-db` first" in missing.output

    assert "upgraded from revision empty" in digest(env, "init-db").output
    assert "already at schema revision" in digest(env, "init-db").output
    engine = make_engine(f"sqlite:///{env['DIGEST_DATA_DIR']}/digest.sqlite3")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    engine.dispose()
    old = digest(env, "ingest", "whatever.jsonl")
    assert old.exit_code == 1
    assert "schema is at revision older" in old.output and "digest init-db" in old.output


def test_a_bad_setting_is_named(env: dict[str, str]) -> None:
    result = digest({**env, "DIGEST_SMTP_URL": "mail.example.org"}, "run")
    assert result.exit_code == 1
    assert "DIGEST_SMTP_URL" in result.output


def test_ingest_reports_counts_and_names_each_malformed_record(env: dict[str, str], tmp_path: Path) -> None:
    digest(env, "init-db")
    path = tmp_path / "papers.jsonl"
    path.write_text(
        json.dumps({"title": "Tiny adapters", "abstract": "Adapters with very few parameters."})
        + "\n{not json\n"
        + json.dumps({"title": "No abstract here"})
        + "\n"
        + json.dumps({"title": "tiny ADAPTERS!", "abstract": "The same title, typed differently."})
        + "\n",
        encoding="utf-8",
    )
    result = digest(env, "ingest", str(path))
    assert result.exit_code == 0, result.output
    assert "1 new, 0 updated, 1 duplicate, 2 rejected" in result.output
    assert f"rejected {path}:2:" in result.output
    assert f"rejected {path}:3:" in result.output and "abstract" in result.output
    assert listing_count(env) == 1


def test_an_unreadable_file_exits_non_zero_and_stores_nothing(env: dict[str, str], tmp_path: Path) -> None:
    digest(env, "init-db")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"title": "A paper", "abstract": "About something."}) + "\n", encoding="utf-8")
    result = digest(env, "ingest", str(good), str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 1
    assert "missing.jsonl" in result.output
    assert listing_count(env) == 0


def test_subscribe_rejects_a_bad_address_and_sends_a_confirmation_otherwise(env: dict[str, str]) -> None:
    digest(env, "init-db")
    bad = digest(env, "subscribe", "not-an-address", "--topics", "LoRA")
    assert bad.exit_code == 1 and "email:" in bad.output and "not-an-address" in bad.output
    no_topics = digest(env, "subscribe", "ann@example.org", "--topics", " , ")
    assert no_topics.exit_code == 1 and "topics: at least one topic is needed" in no_topics.output

    pending = digest(env, "subscribe", "ann@example.org", "--topics", "LoRA, adapters")
    assert pending.exit_code == 0, pending.output
    assert "confirmation email was sent" in pending.output
    (eml,) = (Path(env["DIGEST_DATA_DIR"]) / "outbox").glob("*.eml")
    confirmation = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert confirmation["To"] == "ann@example.org"
    assert "https://digest.example.org/confirm/" in confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    active = digest(env, "subscribe", "bob@example.org", "--topics", "LoRA", "--confirmed")
    assert "subscribed, active" in active.output


def test_demo_prints_the_table_and_writes_emails_a_mail_client_opens(
    tmp_path: Path, env: dict[str, str], shared_listings: list[Path]
) -> None:
    demo_dir = tmp_path / "demo"
    result = digest(env, "demo", "--data-dir", str(demo_dir), "--listings", str(shared_listings[0].parent))
    assert result.exit_code == 0, result.output
    assert "5 sent, 0 skipped (nothing new), 0 failed" in result.output
    assert "ada@example.org" in result.output and "Score" in result.output
    emails = sorted((demo_dir / "outbox").glob("*.eml"))
    assert len(emails) == 5
    for path in emails:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None
        assert path.name in result.output

    again = digest(env, "demo", "--data-dir", str(demo_dir), "--listings", str(shared_listings[0].parent))
    assert again.exit_code == 0, "a second demo replaces the first one's folder"

    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", encoding="utf-8")
    refused = digest(env, "demo", "--data-dir", str(foreign))
    assert refused.exit_code == 1 and "was not made by `digest demo`" in refused.output
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_dkim_keygen_writes_a_key_once_and_prints_its_record(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main
    from digest.config import get_settings
    from digest.mail.dkim import DkimSigner

    env = {"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_FROM": "Digest <digest@example.org>"}
    key = tmp_path / "dkim.pem"
    made = CliRunner().invoke(main, ["dkim-keygen", str(key), "--selector", "s2026"], env=env)
    assert made.exit_code == 0, made.output
    assert (
        made.stdout.startswith("s2026._domainkey.example.org IN TXT") and "v=DKIM1; k=rsa; p=" in made.stdout
    )
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    signer = DkimSigner.from_settings(get_settings({**env, "DIGEST_DKIM_KEY_FILE": str(key)}))
    assert signer is not None

    again = CliRunner().invoke(main, ["dkim-keygen", str(key)], env=env)
    assert again.exit_code == 1 and "already exists" in again.output
