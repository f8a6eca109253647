"""Paper identity across sources: arXiv ids (old and new style, versions apart) and DOIs, normalised."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MAX_DOI_CHARS = 200

# --- Identity ----------------------------------------------------------------------------------------

# Archives that existed before the April 2007 switch to "YYMM.NNNN" identifiers.
_OLD_STYLE_ARCHIVES = frozenset(
    {
        "acc-phys", "adap-org", "alg-geom", "ao-sci", "astro-ph", "atom-ph", "bayes-an", "chao-dyn",
        "chem-ph", "cmp-lg", "comp-gas", "cond-mat", "cs", "dg-ga", "funct-an", "gr-qc", "hep-ex",
        "hep-lat", "hep-ph", "hep-th", "math", "math-ph", "mtrl-th", "nlin", "nucl-ex", "nucl-th",
        "patt-sol", "physics", "plasm-ph", "q-alg", "q-bio", "quant-ph", "solv-int", "supr-con",
    }
)  # fmt: skip
_FIRST_NEW_STYLE_MONTH = 704

_NEW_STYLE_ID = re.compile(r"(?P<yymm>\d{4})\.(?P<number>\d{4,5})(?:v(?P<version>\d{1,3}))?")
_OLD_STYLE_ID = re.compile(
    r"(?P<archive>[A-Za-z]+(?:-[A-Za-z]+)?)(?:\.(?P<subject>[A-Za-z]+(?:-[A-Za-z]+)?))?"
    r"/(?P<number>\d{7})(?:v(?P<version>\d{1,3}))?"
)
_ARXIV_ID_PREFIX = re.compile(r"(?:arxiv:|oai:arxiv\.org:)\s*", re.IGNORECASE)
_ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
_HUGGINGFACE_HOSTS = frozenset({"huggingface.co", "www.huggingface.co"})
_ARXIV_URL_PATH = re.compile(r"/(?:abs|pdf|html)/(?P<id>.+?)(?:\.pdf)?/?")
_HUGGINGFACE_URL_PATH = re.compile(r"/papers/(?P<id>[^/]+)/?")
_SCHEMELESS_HOSTS = tuple(f"{host}/" for host in (*_ARXIV_HOSTS, *_HUGGINGFACE_HOSTS))
# No identifier or URL for one is anywhere near this long; the cap keeps junk from being scanned.
_MAX_IDENTIFIER_INPUT_CHARS = 500


def normalize_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """The versionless arXiv id and the version, from any of the forms sources write an id in, so the same
    paper met as "arXiv:2401.01234", an abs URL and "2401.01234v2" is recognised as one.

    Old-style ids are the archive and number only: "math.GT/0309136" is "math/0309136". Anything that
    is not an arXiv id, including a DOI, gives None.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_IDENTIFIER_INPUT_CHARS:
        return None
    candidate = _identifier_part(text)
    return None if candidate is None else _split_bare_arxiv_id(candidate)


def _identifier_part(text: str) -> str | None:
    if "://" in text or text.lower().startswith(_SCHEMELESS_HOSTS):
        url = text if "://" in text else f"https://{text}"
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return None
        if parts.scheme.lower() not in ("http", "https"):
            return None
        path = unquote(parts.path)
        if host in _ARXIV_HOSTS:
            match = _ARXIV_URL_PATH.fullmatch(path)
        elif host in _HUGGINGFACE_HOSTS:
            match = _HUGGINGFACE_URL_PATH.fullmatch(path)
        else:
            return None
        return match["id"] if match else None
    prefix = _ARXIV_ID_PREFIX.match(text)
    return text[prefix.end() :] if prefix else text


def _valid_month(yymm: str) -> bool:
    return 1 <= int(yymm[2:]) <= 12


def _split_bare_arxiv_id(candidate: str) -> tuple[str, int | None] | None:
    if new_style := _NEW_STYLE_ID.fullmatch(candidate):
        yymm = new_style["yymm"]
        if int(yymm) < _FIRST_NEW_STYLE_MONTH or not _valid_month(yymm):
            return None
        identifier, raw_version = f"{yymm}.{new_style['number']}", new_style["version"]
    elif old_style := _OLD_STYLE_ID.fullmatch(candidate):
        archive = old_style["archive"].lower()
        if archive not in _OLD_STYLE_ARCHIVES or not _valid_month(old_style["number"][:4]):
            return None
        # "math.GT/0309136" names the subject class too, but the paper's identifier is "math/0309136".
        identifier, raw_version = f"{archive}/{old_style['number']}", old_style["version"]
    else:
        return None
    if raw_version is None:
        return identifier, None
    version = int(raw_version)
    return (identifier, version) if version >= 1 else None


_DOI_PREFIX = re.compile(r"(?:https?://(?:www\.|dx\.)?doi\.org/|doi:\s*|doi\s+|info:doi/)", re.IGNORECASE)
_DOI = re.compile(r"10\.\d{4,9}/\S+")


def normalize_doi(raw: str) -> str | None:
    """The DOI in lowercase without a resolver prefix, as DOIs compare case-insensitively and sources
    write them as bare names, "doi:" names or resolver URLs."""
    text = raw.strip()
    if len(text) > _MAX_IDENTIFIER_INPUT_CHARS:
        return None
    if prefix := _DOI_PREFIX.match(text):
        is_url = "://" in prefix.group()
        text = text[prefix.end() :]
        if is_url:
            text = unquote(text.split("#", 1)[0])
    if len(text) > MAX_DOI_CHARS or not _DOI.fullmatch(text):
        return None
    return text.lower()


def arxiv_abs_url(arxiv_id: str) -> str:
    """The one URL a paper is linked by, whichever source reported it."""
    return f"https://arxiv.org/abs/{arxiv_id}"
