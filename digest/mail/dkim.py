"""DKIM signing of outgoing mail, and generating the key pair to sign with.

Mailbox providers expect bulk mail to carry a DKIM signature from the domain in its From address, and
RFC 8058 one-click unsubscribe only counts when the List-Unsubscribe headers are covered by it. Signing
works on the exact bytes that go on the wire: sign last, then send those bytes without re-serialising.

The private key is a PEM file named by DIGEST_DKIM_KEY_FILE; the matching public key is published in
DNS as a TXT record at `<selector>._domainkey.<domain>` (`generate_key` writes the one and prints the
other).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from dkim.crypto import parse_pem_private_key  # type: ignore[import-untyped]

from digest.config import ConfigError, Settings

# Header fields covered by the signature when the message has them. RFC 8058 asks for List-Unsubscribe and
# List-Unsubscribe-Post to be signed, or receivers will not offer one-click unsubscribe.
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
)
KEY_BITS = 2048
# Receivers (and dkimpy's verifier) ignore signatures made with shorter keys.
MIN_KEY_BITS = 1024
# A DNS TXT record is a list of character-strings of at most 255 bytes each; the verifier joins them.
_TXT_CHUNK = 255
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_PROBE_MESSAGE = b"From: probe@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimSigner:
    """Adds a DKIM-Signature header to messages, with one private key read at start-up."""

    def __init__(
        self, private_key: bytes, *, domain: str, selector: str, source: str = "the DKIM key"
    ) -> None:
        """`source` names where the key came from, for error messages (the key file's path)."""
        self.domain = domain
        self.selector = selector
        self._domain = _ascii_domain(domain, source)
        self._selector = selector.encode("ascii")
        self._key = _checked_key(private_key, source)
        # Sign something once now, so that a key dkimpy cannot use fails at start-up and not on a send.
        try:
            dkim.sign(
                _PROBE_MESSAGE,
                self._selector,
                self._domain,
                self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=b"rsa-sha256",
                include_headers=[b"from"],
            )
        except dkim.DKIMException as exc:
            raise ConfigError(f"{source} cannot be used to sign: {exc}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer for DIGEST_DKIM_KEY_FILE, or None when no key file is configured."""
        path = settings.dkim_key_file
        if path is None:
            return None
        source = f"DIGEST_DKIM_KEY_FILE {str(path)!r}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source} cannot be read: {exc.strerror or exc}") from None
        return cls(data, domain=settings.mail_domain, selector=settings.dkim_selector, source=source)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front, in the message's own line endings.

        Raises ValueError for a message without a From header, which DKIM cannot sign.
        """
        linesep = b"\r\n" if message.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
        include = _headers_to_sign(message)
        if b"from" not in include:
            raise ValueError("cannot DKIM-sign a message without a From header")
        try:
            signature = dkim.sign(
                message,
                self._selector,
                self._domain,
                self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=b"rsa-sha256",
                include_headers=include,
                linesep=linesep,
            )
        except dkim.DKIMException as exc:
            raise ValueError(f"cannot DKIM-sign the message: {exc}") from exc
        return bytes(signature) + message


def _headers_to_sign(message: bytes) -> list[bytes]:
    """The SIGNED_HEADERS present in the message, each named once more than it occurs.

    Naming a field one extra time ("over-signing") signs its absence too, so nobody can add a second
    Subject or List-Unsubscribe to a signed message without breaking the signature.
    """
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    counts: dict[bytes, int] = {}
    for match in _FIELD_NAME.finditer(head):
        name = match.group(1).lower()
        counts[name] = counts.get(name, 0) + 1
    include: list[bytes] = []
    for field in SIGNED_HEADERS:
        name = field.lower().encode("ascii")
        if counts.get(name):
            include.extend([name] * (counts[name] + 1))
    return include


def _ascii_domain(domain: str, source: str) -> bytes:
    try:
        return domain.encode("idna")
    except UnicodeError:
        raise ConfigError(f"{source}: the From domain {domain!r} is not a valid domain name") from None


def _checked_key(data: bytes, source: str) -> bytes:
    if not data.strip():
        raise ConfigError(f"{source} is empty; it should hold a PEM RSA private key")
    # dkimpy only finds the key between LF-terminated armour lines.
    data = data.replace(b"\r\n", b"\n")
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{source} is not a PEM file (no '-----BEGIN ... PRIVATE KEY-----' line)")
    if b"PRIVATE KEY-----" not in data:
        raise ConfigError(f"{source} holds no private key (a public key or certificate instead?)")
    try:
        parsed = parse_pem_private_key(data)
    except Exception as exc:  # the ASN.1 parser fails in many ways on damaged input; all mean the same
        raise ConfigError(
            f"{source} is not an RSA private key in PKCS#1 or PKCS#8 PEM form ({exc or type(exc).__name__})"
        ) from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_KEY_BITS:
        raise ConfigError(
            f"{source} is a {bits}-bit key; receivers ignore DKIM keys under {MIN_KEY_BITS} bits "
            f"(generate a {KEY_BITS}-bit one)"
        )
    return data


# Key generation -------------------------------------------------------------------------------------


def generate_key(path: Path, selector: str, domain: str) -> str:
    """Write a new 2048-bit RSA private key to `path` (mode 0600) and return the DNS record to publish.

    Uses the `openssl` command. Never overwrites: an existing file raises FileExistsError. The record is
    a zone-file line; its value is split into quoted strings of at most 255 characters, as DNS requires.
    """
    pem = _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{KEY_BITS}"], b"")
    public_der = _openssl(["pkey", "-pubout", "-outform", "DER"], pem)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; not overwriting a DKIM key") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return txt_record(selector, domain, public_der)


def txt_record(selector: str, domain: str, public_key_der: bytes) -> str:
    """`<selector>._domainkey.<domain> IN TXT "v=DKIM1; k=rsa; p=..."` for a DER SubjectPublicKeyInfo."""
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(public_key_der).decode("ascii")
    chunks = " ".join(f'"{value[i : i + _TXT_CHUNK]}"' for i in range(0, len(value), _TXT_CHUNK))
    return f"{selector}._domainkey.{domain.rstrip('.')} IN TXT {chunks}"


def _openssl(args: list[str], stdin: bytes) -> bytes:
    """Run openssl with the key material on pipes, so no key ever sits in a file with loose permissions."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("generating a DKIM key needs the openssl command, which is not installed")
    result = subprocess.run([openssl, *args], input=stdin, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        detail = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"openssl {args[0]} failed: {detail or f'exit status {result.returncode}'}")
    return result.stdout
