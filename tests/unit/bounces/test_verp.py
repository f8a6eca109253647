"""VERP return paths: one address per digest that only this installation can make."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from digest.bounces.verp import digest_id_from, return_path
from digest.config import ConfigError, Settings
from tests.support.env import make_settings


@pytest.mark.parametrize("digest_id", [0, 1, 35, 36, 4_812, 2**31 - 1, 2**63 - 1])
def test_a_return_path_names_its_digest_in_lower_case_letters_and_digits(
    settings: Settings, digest_id: int
) -> None:
    address = return_path(settings, digest_id)
    local, _, domain = address.partition("@")
    assert domain == "example.org"
    assert re.fullmatch(r"bounces\+[a-z0-9]+", local) and len(local) < 40
    assert digest_id_from(settings, address) == digest_id


def test_the_address_survives_what_servers_and_reports_do_to_it(settings: Settings) -> None:
    address = return_path(settings, 4812)
    for seen in (
        address.upper(),
        f"<{address}>",
        f"rfc822; {address}",
        f"rfc822;{address.upper()}",
        f'"Bounces" <{address}>',
        f"  {address}\n",
    ):
        assert digest_id_from(settings, seen) == 4812, seen


def test_an_altered_or_foreign_address_names_no_digest(settings: Settings) -> None:
    address = return_path(settings, 4812)
    local, _, domain = address.partition("@")
    token = local.removeprefix("bounces+")
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    other_id = return_path(settings, 4813).partition("@")[0].removeprefix("bounces+")
    for forged in (
        f"bounces+{flipped}@{domain}",  # one character of the MAC changed
        f"bounces+{other_id[:-16]}{token[-16:]}@{domain}",  # another id with this MAC
        f"bounces+0{token}@{domain}",  # the same id spelt with a leading zero
        f"bounces+{token[:-1]}@{domain}",  # truncated
        f"bounces-{token}@{domain}",
        f"digest+{token}@{domain}",
        "bounces@example.org",
        "digest@example.org",
        "",
        "not an address",
        "MAILER-DAEMON",
    ):
        assert digest_id_from(settings, forged) is None, forged
    other_key = replace(settings, secret_key="another-installation-secret-key")
    assert digest_id_from(other_key, address) is None


def test_the_domain_is_ours_to_choose_and_does_not_decide_whose_address_it_is(tmp_path: Path) -> None:
    default = make_settings(tmp_path)
    assert default.bounce_domain == "example.org"
    chosen = make_settings(tmp_path, DIGEST_BOUNCE_DOMAIN="Bounces.Example.ORG.")
    assert chosen.bounce_domain == "bounces.example.org"
    address = return_path(chosen, 7)
    assert address.endswith("@bounces.example.org")
    # Sent before the domain changed, bounced after: the MAC still says it is ours.
    assert digest_id_from(default, address) == 7
    # Settings built by hand (tests, tools) leave the domain empty and fall back to the From domain.
    assert return_path(replace(default, bounce_domain=""), 7).endswith("@example.org")


@pytest.mark.parametrize("value", ["exa mple.org", "-bad.example.org", "a..b", "bounces@example.org"])
def test_a_bad_bounce_domain_names_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="DIGEST_BOUNCE_DOMAIN"):
        make_settings(tmp_path, DIGEST_BOUNCE_DOMAIN=value)


def test_a_negative_id_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError):
        return_path(settings, -1)
