"""VERP return paths: each digest's envelope sender names that digest, so its bounce can be tied back to it.

Most bounces are not a 5xx while we talk to the server but a report mailed later to the envelope sender,
often by a server further along that quotes the original badly or not at all. Giving every digest its
own return path, `bounces+TOKEN@DOMAIN`, makes the address the report is delivered to say which digest
bounced, whatever the report's body holds.

The token is the digest id in base 36 followed by 16 characters of an HMAC of it under the secret key.
Without the HMAC anyone could mail a made-up report to `bounces+<id>@...` and get any subscriber
suppressed. Only lower-case letters and digits are used, because mail servers may fold the local part's
case; 16 base-32 characters are 80 bits of the MAC, and the whole local part stays under 40 characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from email.utils import parseaddr
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.config import Settings

LOCAL_PART = "bounces"
_MAC_LENGTH = 16
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Distinguishes these MACs from any other use of the secret key.
_PURPOSE = b"digest/verp-return-path/v1:"
_TOKEN = re.compile(rf"{LOCAL_PART}\+([0-9a-z]{{1,13}})([a-z2-7]{{{_MAC_LENGTH}}})")


def _mac(settings: Settings, digest_id: int) -> str:
    key = settings.secret_key.encode("utf-8")
    mac = hmac.new(key, _PURPOSE + str(digest_id).encode("ascii"), hashlib.sha256)
    return base64.b32encode(mac.digest()).decode("ascii").lower()[:_MAC_LENGTH]


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, remainder = divmod(number, 36)
        digits = _DIGITS[remainder] + digits
        if number == 0:
            return digits


def return_path(settings: Settings, digest_id: int) -> str:
    """The envelope sender (MAIL FROM) for one digest; the From: header is not changed by it."""
    if digest_id < 0:
        raise ValueError(f"a digest id is not negative: {digest_id}")
    domain = settings.bounce_domain or settings.mail_domain
    return f"{LOCAL_PART}+{_base36(digest_id)}{_mac(settings, digest_id)}@{domain}"


def digest_id_from(settings: Settings, address: str) -> int | None:
    """The digest a return path was made for, or None for an address that is not one of ours or was altered.

    The domain is not compared: the bounce domain may have changed since the digest was sent, and the MAC
    alone is what makes the address ours. Accepts what reports write around an address: angle brackets,
    a display name, an address type such as `rfc822;`.
    """
    text = address.strip()
    if ";" in text:
        text = text.split(";", 1)[1].strip()
    addr = parseaddr(text)[1] or text
    local = addr.rpartition("@")[0].lower()
    match = _TOKEN.fullmatch(local)
    if match is None:
        return None
    encoded, mac = match.groups()
    if encoded != "0" and encoded.startswith("0"):  # one spelling per id
        return None
    digest_id = int(encoded, 36)
    if not hmac.compare_digest(mac, _mac(settings, digest_id)):
        return None
    return digest_id
