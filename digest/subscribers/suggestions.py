"""Topic suggestions while a person types, from the phrases the corpus itself uses in titles.

Suggesting what papers actually say ("diffusion models", "low-rank adaptation") steers people towards
topics that match something; a free-text box alone invites typos and phrasings no paper uses. The
vocabulary is built once per feature-space version (a few seconds over the stored titles) and kept in
memory and on disk, so answering a keystroke is a scan of a sorted list.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sqlalchemy import select

from digest.models import Listing
from digest.services import Services

TITLES_SCANNED = 50_000
MIN_DOCUMENTS = 2
MAX_PHRASES = 30_000
_WORD = re.compile(r"[a-z0-9][a-z0-9+-]*[a-z0-9+]|[a-z0-9]")


@dataclass(frozen=True)
class Vocabulary:
    version: str
    # (phrase, number of titles using it), sorted by phrase for prefix search.
    phrases: list[tuple[str, int]]


def _title_words(title: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode("ascii")
    return _WORD.findall(folded)


def phrases_of(title: str) -> set[str]:
    """Phrases of one to three words that neither start nor end with a stop word."""
    words = _title_words(title)
    found: set[str] = set()
    for size in (1, 2, 3):
        for start in range(len(words) - size + 1):
            chunk = words[start : start + size]
            if chunk[0] in ENGLISH_STOP_WORDS or chunk[-1] in ENGLISH_STOP_WORDS:
                continue
            if size == 1 and (len(chunk[0]) < 3 or chunk[0].isdigit()):
                continue
            found.add(" ".join(chunk))
    return found


def build(titles: list[str], version: str) -> Vocabulary:
    counts: Counter[str] = Counter()
    for title in titles:
        counts.update(phrases_of(title))
    common = [(p, n) for p, n in counts.most_common(MAX_PHRASES) if n >= MIN_DOCUMENTS]
    return Vocabulary(version, sorted(common))


_cache: dict[Path, Vocabulary] = {}


def _space_version(directory: Path) -> str:
    pointer = directory / "current"
    return pointer.read_text(encoding="utf-8").strip() if pointer.exists() else "none"


def vocabulary(services: Services) -> Vocabulary:
    directory = services.settings.data_dir / "models"
    version = _space_version(directory)
    cached = _cache.get(directory)
    if cached is not None and cached.version == version:
        return cached
    path = directory / "vocabulary.json"
    loaded: Vocabulary | None = None
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("version") == version:
            loaded = Vocabulary(version, [(p, int(n)) for p, n in stored["phrases"]])
    if loaded is None:
        with services.sessions() as session:
            titles = list(
                session.scalars(select(Listing.title).order_by(Listing.id.desc()).limit(TITLES_SCANNED))
            )
        loaded = build(titles, version)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".vocabulary.{secrets.token_hex(6)}.tmp"
        temporary.write_text(json.dumps({"version": version, "phrases": loaded.phrases}), encoding="utf-8")
        os.replace(temporary, path)
    _cache[directory] = loaded
    return loaded


def suggest(services: Services, prefix: str, limit: int = 8) -> list[str]:
    """Phrases that start with what was typed, most used first; then phrases with a word starting so."""
    typed = " ".join(_title_words(prefix[:100]))
    if len(typed) < 2:
        return []
    phrases = vocabulary(services).phrases
    start = bisect_left(phrases, (typed, 0))
    leading: list[tuple[str, int]] = []
    for phrase, count in phrases[start:]:
        if not phrase.startswith(typed):
            break
        leading.append((phrase, count))
    chosen = [p for p, _ in sorted(leading, key=lambda pc: (-pc[1], len(pc[0])))[:limit]]
    if len(chosen) < limit:
        inner = [(p, n) for p, n in phrases if f" {typed}" in f" {p}" and not p.startswith(typed)]
        chosen += [p for p, _ in sorted(inner, key=lambda pc: (-pc[1], len(pc[0])))[: limit - len(chosen)]]
    return chosen
