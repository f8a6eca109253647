from __future__ import annotations

import stat
from pathlib import Path

import pytest

from digest.config import ConfigError, get_settings


def test_defaults_need_no_server(tmp_path: Path) -> None:
    settings = get_settings({"DIGEST_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'digest.sqlite3'}"
    assert settings.broker_url is None and settings.eager
    assert settings.smtp_url is None
    assert settings.outbox_dir == tmp_path / "outbox"
    assert settings.base_url == "http://127.0.0.1:8000"


def test_a_generated_secret_is_kept_private_and_reused(tmp_path: Path) -> None:
    first = get_settings({"DIGEST_DATA_DIR": str(tmp_path)}).secret_key
    second = get_settings({"DIGEST_DATA_DIR": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert get_settings({"DIGEST_DATA_DIR": str(tmp_path / "other")}).secret_key != first


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DIGEST_DATABASE_URL", "mysql://x"),
        ("DIGEST_BROKER_URL", "amqp://guest@localhost"),
        ("DIGEST_SMTP_URL", "http://mail"),
        ("DIGEST_BASE_URL", "digest.example.org"),
        ("DIGEST_FROM", "not an address"),
        ("DIGEST_SECRET_KEY", "short"),
        ("DIGEST_SIZE", "ten"),
        ("DIGEST_SEND_HOUR_UTC", "25"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        get_settings({"DIGEST_DATA_DIR": str(tmp_path), name: value})


def test_the_organisation_is_optional_and_kept_as_written(tmp_path: Path) -> None:
    assert get_settings({"DIGEST_DATA_DIR": str(tmp_path)}).organisation == ""
    settings = get_settings({"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_ORGANISATION": "  Université Lab  "})
    assert settings.organisation == "Université Lab"


@pytest.mark.parametrize("value", ["Lab\r\nBcc: x@example.org", "Lab\tTabs", "L" * 81])
def test_an_unusable_organisation_names_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="DIGEST_ORGANISATION"):
        get_settings({"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_ORGANISATION": value})
