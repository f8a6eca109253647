"""Who a reader sees an email is from: the sender's name and the organisation running the service, in the
From header and in the footer of every email."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.mail.compose import compose, from_header
from digest.mail.render import RenderedEmail, Renderer
from tests.support.env import make_settings
from tests.unit.mail.test_email_html import ALREADY, CONFIRM, DIGESTS, Document

RENDERED = RenderedEmail(subject="Hello", text="Plain text\n", html="<p>HTML</p>\n")


def sent_from(tmp_path: Path, **env: str) -> tuple[bytes, EmailMessage]:
    settings = make_settings(tmp_path, **env)
    data = compose(settings, to="reader@example.org", rendered=RENDERED, unsubscribe_url=None).data
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return data, message


def raw_header(data: bytes, name: str) -> str:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = head.replace("\r\n ", " ")
    (line,) = [line for line in unfolded.split("\r\n") if line.startswith(f"{name}: ")]
    return line.removeprefix(f"{name}: ")


def test_without_an_organisation_the_from_header_is_the_configured_sender(tmp_path: Path) -> None:
    data, message = sent_from(tmp_path)
    assert raw_header(data, "From") == "Paper digest <digest@example.org>"
    (address,) = message["From"].addresses
    assert (address.display_name, address.addr_spec) == ("Paper digest", "digest@example.org")


def test_the_organisation_follows_the_senders_name(tmp_path: Path) -> None:
    data, message = sent_from(tmp_path, DIGEST_ORGANISATION="Example Lab")
    (address,) = message["From"].addresses
    assert (address.display_name, address.addr_spec) == ("Paper digest · Example Lab", "digest@example.org")
    # The middle dot is not ASCII: it goes as an RFC 2047 encoded word, the rest stays readable.
    header = raw_header(data, "From")
    assert header.isascii() and "=?utf-8?" in header and header.endswith(" <digest@example.org>")


def test_a_non_ascii_organisation_with_specials_is_encoded_and_read_back_whole(tmp_path: Path) -> None:
    name = "Université de Genève, Laboratoire d'informatique théorique et appliquée (LITA)"
    data, message = sent_from(tmp_path, DIGEST_ORGANISATION=name)
    (address,) = message["From"].addresses
    assert address.addr_spec == "digest@example.org"
    # Too long for one encoded word, so it is several, which RFC 2047 readers join without the folding
    # space between them (the standard library's newer parser keeps that space: it is not used here).
    header = raw_header(data, "From")
    phrase, _, addr = header.rpartition(" ")
    assert addr == "<digest@example.org>"
    assert str(make_header(decode_header(phrase))) == f"Paper digest · {name}"
    words = phrase.split()
    assert len(words) > 1 and all(w.startswith("=?utf-8?q?") and len(w) <= 75 for w in words)
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(line) <= 78 for line in head.split("\r\n") if line.startswith(("From:", " ")))


def test_an_ascii_organisation_with_a_comma_is_quoted_not_split_into_two_addresses(tmp_path: Path) -> None:
    data, message = sent_from(tmp_path, DIGEST_FROM="digest@example.org", DIGEST_ORGANISATION="Lab, Inc.")
    assert raw_header(data, "From") == '"Lab, Inc." <digest@example.org>'
    (address,) = message["From"].addresses
    assert address.display_name == "Lab, Inc."


def test_a_line_break_cannot_reach_the_from_header() -> None:
    with pytest.raises(ValueError, match="line break"):
        from_header("Paper digest <digest@example.org>", "Lab\r\nBcc: victim@example.org")


@pytest.mark.parametrize(
    ("name", "context"),
    [("digest", DIGESTS["typical"]), ("confirm", CONFIRM), ("already_subscribed", ALREADY)],
)
def test_every_emails_footer_names_the_organisation(name: str, context: dict[str, object]) -> None:
    email = Renderer.default(organisation="Example Lab").render(name, context)
    body = " ".join(Document(email.html).all("body")[0].text.split())
    assert "Sent by Example Lab’s paper digest." in body
    assert "Sent by Example Lab's paper digest." in email.text
    plain = Renderer.default().render(name, context)
    assert "Sent by" not in plain.html and "Sent by" not in plain.text
    hostile = Renderer.default(organisation="<b>Lab</b>").render(name, context)
    assert "<b>Lab</b>" not in hostile.html and "&lt;b&gt;Lab&lt;/b&gt;" in hostile.html


def test_the_services_renderer_uses_the_configured_organisation(tmp_path: Path) -> None:
    from digest.services import Services

    services = Services.build(make_settings(tmp_path, DIGEST_ORGANISATION="Example Lab"))
    try:
        email = services.renderer.render("confirm", CONFIRM)
    finally:
        services.close()
    assert "Sent by Example Lab's paper digest." in email.text
