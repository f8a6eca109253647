"""DKIM: real keys from openssl, real messages from build_message, verified with dkimpy against a fake DNS."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import dkim
import pytest

from digest.config import ConfigError, Settings, get_settings
from digest.mail.compose import WIRE_POLICY, build_message
from digest.mail.dkim import SIGNED_HEADERS, DkimSigner, generate_key
from digest.mail.render import RenderedEmail

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="key generation needs openssl")

UNSUBSCRIBE = "https://digest.example.org/unsubscribe/abc123"
DNS_NAME = b"digest._domainkey.example.org."


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One generated key for the module (a 2048-bit key takes a moment) and its TXT record."""
    path = tmp_path_factory.mktemp("dkim") / "digest.pem"
    return path, generate_key(path, "digest", "example.org")


def txt_value(record: str) -> bytes:
    """What a resolver hands back for the record: its quoted character-strings joined."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode("ascii")


def fake_dns(record: str) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return txt_value(record) if name == DNS_NAME else None

    return lookup


def settings_for(tmp_path: Path, key_file: Path) -> Settings:
    return get_settings(
        {
            "DIGEST_DATA_DIR": str(tmp_path),
            "DIGEST_DKIM_KEY_FILE": str(key_file),
            "DIGEST_FROM": "Digest <digest@example.org>",
        }
    )


def wire_message(settings: Settings, subject: str = "Your paper digest: 2 new papers") -> bytes:
    rendered = RenderedEmail(
        subject=subject,
        text="1. Low-rank adapters revisited\n\nhttps://arxiv.org/abs/2501.00001\n",
        html="<p>1. <a href='https://arxiv.org/abs/2501.00001'>Low-rank adapters revisited</a></p>",
    )
    message = build_message(settings, to="reader@example.org", rendered=rendered, unsubscribe_url=UNSUBSCRIBE)
    return message.as_bytes(policy=WIRE_POLICY)


def signature_tags(signed: bytes) -> dict[str, str]:
    header = re.match(rb"DKIM-Signature:(.*?)\r?\n(?![ \t])", signed, re.DOTALL)
    assert header is not None
    unfolded = re.sub(rb"\s+", b"", header.group(1)).decode("ascii")
    return dict(tag.split("=", 1) for tag in unfolded.split(";") if tag)


@pytest.fixture
def signer_and_dns(
    tmp_path: Path, key: tuple[Path, str]
) -> tuple[Settings, DkimSigner, Callable[..., bytes | None]]:
    path, record = key
    settings = settings_for(tmp_path, path)
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    return settings, signer, fake_dns(record)


def test_a_signed_digest_verifies(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, dns = signer_and_dns
    message = wire_message(settings, subject="Digest — ünïcode and a rather long subject line to fold")
    signed = signer.sign(message)

    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(message)
    assert dkim.verify(signed, dnsfunc=dns)


def test_the_signature_names_domain_selector_algorithms_and_headers(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, _ = signer_and_dns
    message = wire_message(settings)
    tags = signature_tags(signer.sign(message))

    assert tags["d"] == "example.org"
    assert tags["s"] == "digest"
    assert tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    signed_headers = set(tags["h"].split(":"))
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed_headers
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type"):
        assert name in signed_headers
    present = {k.lower() for k in message_from_bytes(message)}
    assert signed_headers == {h.lower() for h in SIGNED_HEADERS} & present


def test_headers_the_message_lacks_are_not_signed(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    _, signer, dns = signer_and_dns
    signed = signer.sign(b"From: digest@example.org\r\nTo: r@example.org\r\nSubject: hi\r\n\r\nbody\r\n")

    assert set(signature_tags(signed)["h"].split(":")) == {"from", "to", "subject"}
    assert dkim.verify(signed, dnsfunc=dns)


def test_headers_are_over_signed_so_none_can_be_added(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, dns = signer_and_dns
    signed = signer.sign(wire_message(settings))
    assert signature_tags(signed)["h"].split(":").count("list-unsubscribe") == 2

    head, body = signed.split(b"\r\n\r\n", 1)
    added = head + b"\r\nList-Unsubscribe: <https://evil.example/x>\r\n\r\n" + body
    assert not dkim.verify(added, dnsfunc=dns)


def test_the_signature_uses_the_messages_crlf_line_endings(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, _ = signer_and_dns
    message = wire_message(settings)
    signed = signer.sign(message)
    signature = signed[: len(signed) - len(message)]

    assert signature.endswith(b"\r\n")
    assert b"\n" not in signature.replace(b"\r\n", b"")
    assert b"\r" not in signature.replace(b"\r\n", b"")
    # Folded, so each line stays well under the SMTP limit.
    assert max(len(line) for line in signature.split(b"\r\n")) <= 100
    assert len(re.findall(rb"\r\n(?![ \t])", signature)) == 1


def test_a_message_with_lf_line_endings_gets_an_lf_signature(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, dns = signer_and_dns
    message = wire_message(settings).replace(b"\r\n", b"\n")
    signed = signer.sign(message)

    assert b"\r" not in signed
    assert dkim.verify(signed, dnsfunc=dns)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"Subject: Your paper digest", b"Subject: Your paper DIGEST"),
        (UNSUBSCRIBE.encode(), b"https://evil.example/unsubscribe/abc123"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        (b"To: reader@example.org", b"To: someone@example.org"),
        (b"Low-rank adapters revisited", b"High-rank adapters revisited"),
    ],
    ids=["subject", "list-unsubscribe", "list-unsubscribe-post", "to", "body"],
)
def test_tampering_after_signing_breaks_the_signature(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]], before: bytes, after: bytes
) -> None:
    settings, signer, dns = signer_and_dns
    signed = signer.sign(wire_message(settings))
    assert before in signed
    tampered = signed.replace(before, after)

    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_relaxed_canonicalization_survives_harmless_rewrapping(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    settings, signer, dns = signer_and_dns
    signed = signer.sign(wire_message(settings))
    rewrapped = signed.replace(b"Subject: Your paper digest", b"Subject:   Your paper\r\n\tdigest")

    assert dkim.verify(rewrapped, dnsfunc=dns)


def test_a_message_without_from_cannot_be_signed(
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    _, signer, _ = signer_and_dns
    with pytest.raises(ValueError, match="From"):
        signer.sign(b"To: reader@example.org\r\nSubject: hi\r\n\r\nbody\r\n")


def test_no_key_file_means_no_signer(tmp_path: Path) -> None:
    settings = get_settings({"DIGEST_DATA_DIR": str(tmp_path)})
    assert DkimSigner.from_settings(settings) is None


def test_a_missing_key_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        settings_for(tmp_path, missing)


def test_a_key_file_gone_after_start_up_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.pem"
    path.write_text("placeholder")
    settings = settings_for(tmp_path, path)
    path.unlink()
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        DkimSigner.from_settings(settings)


def _public_key_pem(private: Path) -> bytes:
    return subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout"], capture_output=True, check=True
    ).stdout


def _short_key_pem() -> bytes:
    return subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
        capture_output=True,
        check=True,
    ).stdout


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (lambda key: b"", "empty"),
        (lambda key: b"this is not a key\n", "not a PEM file"),
        (
            lambda key: b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
            "not an RSA private key",
        ),
        (lambda key: key.read_bytes()[:300] + b"\n-----END PRIVATE KEY-----\n", "not an RSA private key"),
        (_public_key_pem, "no private key"),
        (lambda key: _short_key_pem(), "512-bit"),
    ],
    ids=["empty", "text", "garbage-pem", "truncated", "public-key", "short-key"],
)
def test_a_bad_key_file_is_a_config_error_naming_it_and_the_problem(
    tmp_path: Path, key: tuple[Path, str], content: Callable[[Path], bytes], complaint: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content(key[0]))
    with pytest.raises(ConfigError) as caught:
        DkimSigner.from_settings(settings_for(tmp_path, bad))
    assert str(bad) in str(caught.value)
    assert complaint in str(caught.value)


def test_a_key_file_with_crlf_line_endings_still_loads(
    tmp_path: Path,
    key: tuple[Path, str],
    signer_and_dns: tuple[Settings, DkimSigner, Callable[..., bytes | None]],
) -> None:
    crlf = tmp_path / "crlf.pem"
    crlf.write_bytes(key[0].read_bytes().replace(b"\n", b"\r\n"))
    settings = settings_for(tmp_path, crlf)
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    assert dkim.verify(signer.sign(wire_message(settings)), dnsfunc=signer_and_dns[2])


def test_generate_key_writes_a_private_file_and_a_publishable_record(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "mail.pem"
    record = generate_key(path, "sel2026", "example.net")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    name, rest = record.split(" IN TXT ", 1)
    assert name == "sel2026._domainkey.example.net"
    strings = re.findall(r'"([^"]*)"', rest)
    assert len(strings) >= 2  # a 2048-bit key does not fit one 255-character string
    assert all(len(s) <= 255 for s in strings)
    assert rest == " ".join(f'"{s}"' for s in strings)
    assert txt_value(record).startswith(b"v=DKIM1; k=rsa; p=MII")


def test_generate_key_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "existing.pem"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        generate_key(path, "digest", "example.org")
    assert path.read_text() == "keep me"


def test_a_digest_sent_through_smtp_arrives_with_a_valid_signature(
    key: tuple[Path, str], tmp_path: Path
) -> None:
    """The production path (compose with the services' signer, the SMTP mailer) signs what it sends."""
    from datetime import timedelta

    from aiosmtpd.controller import Controller

    from digest.db import upgrade
    from digest.deliver.day import run_day
    from digest.models import utcnow
    from digest.services import Services
    from tests.support.daily import LORA, InlineDispatcher, add_subscriber, ingest
    from tests.support.env import SmtpSink, free_port

    sink = SmtpSink(host="127.0.0.1", port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    settings = get_settings(
        {
            "DIGEST_DATA_DIR": str(tmp_path / "data"),
            "DIGEST_DKIM_KEY_FILE": str(key[0]),
            "DIGEST_FROM": "Digest <digest@example.org>",
            "DIGEST_SMTP_URL": sink.url,
            "DIGEST_SECRET_KEY": "dkim-end-to-end-secret-key",
        }
    )
    services = Services.build(settings)
    try:
        upgrade(services.engine)
        ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=1))
        add_subscriber(services, "reader@example.org", "LoRA")
        assert run_day(services, utcnow().date(), InlineDispatcher(services)).sent == 1
        (raw,) = sink.raw
        assert raw.startswith(b"DKIM-Signature:")
        assert dkim.verify(raw, dnsfunc=fake_dns(key[1]))
        header = message_from_bytes(raw)["DKIM-Signature"]
        assert "list-unsubscribe" in header.lower() and "list-id" in header.lower()
    finally:
        services.close()
        controller.stop()
