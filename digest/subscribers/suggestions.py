"""Topic suggestions while a person types, from the phrases the corpus itself uses in titles, each with
the number of recent papers that mention it.

Suggesting what papers actually say ("diffusion models", "low-rank adaptation") steers people towards
topics that match something; a free-text box alone invites typos and phrasings no paper uses. A
suggestion is only worth showing if it reads as a topic: so variants of one phrase (plural, hyphenated)
are shown once, fragments ("graph neural", "neural networks using") and lone everyday words ("dilemma")
are not, and a phrase no recent paper mentions is left out. The count beside each one, and the count for
a whole typed topic, tell the reader before they subscribe whether the topic will bring anything.

Two caches, both cheap to rebuild and kept per process: the vocabulary, built once per feature-space
version from the stored titles (and kept on disk), and the recent papers' words, rebuilt when a newer
paper is stored (one indexed `max(id)` per request tells).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import unicodedata
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakKeyDictionary

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sqlalchemy import Engine, func, select

from digest.models import Listing

# The ranking's own plural folding, so "matches N papers" here means what matching means there.
from digest.rank.features import _fold as singular
from digest.services import Services

TITLES_SCANNED = 50_000
# The papers a count is taken over: the most recently stored ones.
RECENT_PAPERS = 2_000
MIN_DOCUMENTS = 2
MAX_PHRASES = 30_000
MAX_WORDS = 4
# A phrase found inside a longer one at least this often is a fragment of it ("graph neural").
FRAGMENT_SHARE = 0.6
# A phrase whose last word ends a title's phrase less often than this is the front of a longer one.
MIN_FINAL_SHARE = 0.3
VOCABULARY_FORMAT = 2
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9+-]*[A-Za-z0-9+]|[A-Za-z0-9]")
_PUNCTUATION = re.compile(r"[:;,.!?()\[\]{}\"'/|]+")
_MATCH_TOKEN = re.compile(r"[a-z0-9]+(?:[+]+)?")

# Words that make a fragment when a phrase starts or ends with them: the stop words, and the words
# titles use to join or frame their topics ("... using transformers", "towards ...", "rethinking ...").
FUNCTION_WORDS = frozenset(ENGLISH_STOP_WORDS) | {
    "using",
    "via",
    "towards",
    "toward",
    "based",
    "versus",
    "vs",
    "without",
    "within",
    "across",
    "beyond",
    "through",
    "new",
    "novel",
    "rethinking",
    "revisiting",
    "understanding",
    "improving",
    "enhancing",
    "leveraging",
    "exploring",
    "boosting",
    "make",
    "makes",
    "making",
    "learn",
    "learns",
    "approach",
    "framework",
    "method",
    "methods",
    "study",
    "results",
    "case",
}


# The only function words a topic has inside it: "mixture of experts", "question and answer".
LINKING_WORDS = frozenset({"of", "and", "to"})
# Compounds of three or more words that say nothing about a topic.
GENERIC_COMPOUNDS = frozenset(
    {
        "state-of-the-art",
        "end-to-end",
        "off-the-shelf",
        "plug-and-play",
        "easy-to-use",
        "step-by-step",
        "coarse-to-fine",
        "up-to-date",
        "one-to-one",
        "one-to-many",
        "many-to-many",
        "all-in-one",
        "over-the-air",
    }
)


@dataclass(frozen=True)
class Suggestion:
    topic: str
    # Recent papers whose title or abstract mentions the topic (its plural and hyphen variants included).
    papers: int


@dataclass(frozen=True)
class Vocabulary:
    version: str
    # (search key, phrase as shown, titles using it), sorted by key for prefix search. The key folds
    # plurals and hyphens, so "Diffusion model" finds "diffusion models" and "mixture-of" finds
    # "mixture of experts".
    phrases: list[tuple[str, str, int]]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def match_words(text: str) -> list[str]:
    """The words matching is done on: lower case, hyphenated words apart, plurals folded."""
    return [singular(word) for word in _MATCH_TOKEN.findall(_ascii(text.lower()))]


def search_key(phrase: str) -> str:
    return " ".join(match_words(phrase))


def _title_segments(title: str) -> list[list[str]]:
    """Words as written (case kept, hyphens inside), in the runs punctuation leaves: a phrase never
    spans "LoRA: Low-Rank"."""
    return [words for part in _PUNCTUATION.split(_ascii(title)) if (words := _WORD.findall(part))]


def _may_stand_alone(word: str) -> bool:
    """A lone word is a topic when it is a name ('LoRA', 'BERT', 'GPT-4') or a compound of three or more
    words ('mixture-of-experts'), not an everyday word ('dilemma') or a two-word adjective ('large-scale')."""
    parts = word.split("-")
    named = any(
        sum(c.isupper() for c in part) >= 2
        or (any(c.isdigit() for c in part) and any(c.isalpha() for c in part))
        for part in parts
    )
    return named or (len(parts) >= 3 and word.lower() not in GENERIC_COMPOUNDS)


def _candidates(title: str) -> set[tuple[str, bool]]:
    """Phrases of up to four words with no function word at either edge, each with whether it may be
    suggested on its own (a lone word only if `_may_stand_alone`)."""
    found: set[tuple[str, bool]] = set()
    for segment in _title_segments(title):
        found |= _segment_candidates(segment)
    return found


def _segment_candidates(written: list[str]) -> set[tuple[str, bool]]:
    words = [w.lower() for w in written]
    found: set[tuple[str, bool]] = set()
    for size in range(1, MAX_WORDS + 1):
        for start in range(len(words) - size + 1):
            chunk = words[start : start + size]
            edges = (chunk[0], chunk[-1], chunk[0].split("-")[0], chunk[-1].split("-")[-1])
            if any(edge in FUNCTION_WORDS for edge in edges):
                continue  # "towards ...", "... using", and "-based" endings: "diffusion-based"
            if size == 1 and len(chunk[0]) < 2:
                continue
            if any(word in FUNCTION_WORDS and word not in LINKING_WORDS for word in chunk[1:-1]):
                continue  # "learning in deep learning"
            found.add((" ".join(chunk), size > 1 or _may_stand_alone(written[start])))
    return found


def phrases_of(title: str) -> set[str]:
    """The phrases of one title that may be suggested."""
    return {phrase for phrase, alone in _candidates(title) if alone}


def _phrase_final_share(titles: list[str]) -> dict[str, float]:
    """How often each word ends what it is part of (the title, a clause, or before a stop word other than
    "of"): nouns mostly do ("models"), the words of a topic's first half mostly do not ("large",
    "augmented", "mixture" of experts), so a phrase ending in one of those is the front of a longer topic."""
    final: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for title in titles:
        for segment in _title_segments(title):
            words = [part for word in segment for part in match_words(word)]
            for position, word in enumerate(words):
                seen[word] += 1
                following = words[position + 1] if position + 1 < len(words) else None
                if following is None or (following in ENGLISH_STOP_WORDS and following != "of"):
                    final[word] += 1
    return {word: final[word] / count for word, count in seen.items()}


def build(titles: list[str], version: str) -> Vocabulary:
    """Variants of one phrase counted together under the most used spelling; phrases ending where topics
    rarely end dropped. (Fragments of a longer phrase are dropped when suggesting, on the recent papers'
    counts: in a few hundred titles "knowledge distillation" may only ever appear inside a longer one.)"""
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    standalone: set[str] = set()
    for title in titles:
        for phrase, alone in _candidates(title):
            key = search_key(phrase)
            spellings[key][phrase] += 1
            if alone:
                standalone.add(phrase)
    counts = {key: sum(forms.values()) for key, forms in spellings.items()}
    final_share = _phrase_final_share(titles)
    kept: list[tuple[str, str, int]] = []
    for key, count in counts.items():
        if count < MIN_DOCUMENTS or final_share.get(key.split()[-1], 1.0) < MIN_FINAL_SHARE:
            continue
        if any(phrase in standalone for phrase in spellings[key]):
            kept.append((key, spellings[key].most_common(1)[0][0], count))
    kept.sort(key=lambda entry: -entry[2])
    return Vocabulary(version, sorted(kept[:MAX_PHRASES]))


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
        if stored.get("version") == version and stored.get("format") == VOCABULARY_FORMAT:
            loaded = Vocabulary(version, [(k, p, int(n)) for k, p, n in stored["phrases"]])
    if loaded is None:
        with services.sessions() as session:
            titles = list(
                session.scalars(select(Listing.title).order_by(Listing.id.desc()).limit(TITLES_SCANNED))
            )
        loaded = build(titles, version)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".vocabulary.{secrets.token_hex(6)}.tmp"
        stored = {"version": version, "format": VOCABULARY_FORMAT, "phrases": loaded.phrases}
        temporary.write_text(json.dumps(stored), encoding="utf-8")
        os.replace(temporary, path)
    _cache[directory] = loaded
    return loaded


class RecentPapers:
    """The words of the most recent papers, with the papers each word is in, for counting topics."""

    def __init__(self, papers: list[tuple[int, list[str]]]) -> None:
        # (listing id, matching words of title and abstract), newest first.
        self.papers = papers
        self.newest_id = papers[0][0] if papers else 0
        self._texts = [f" {' '.join(words)} " for _, words in papers]
        postings: dict[str, set[int]] = defaultdict(set)
        for number, (_, words) in enumerate(papers):
            for word in words:
                postings[word].add(number)
        self._postings = dict(postings)

    def count(self, topic: str) -> int:
        """Papers whose title or abstract has the topic's words, in order (plurals and hyphens folded)."""
        words = match_words(topic)
        if not words:
            return 0
        sets = sorted((self._postings.get(word, set()) for word in set(words)), key=len)
        candidates = set.intersection(*sets)
        if len(words) == 1:
            return len(candidates)
        needle = f" {' '.join(words)} "
        return sum(1 for number in candidates if needle in self._texts[number])


_recent: WeakKeyDictionary[Engine, RecentPapers] = WeakKeyDictionary()
_recent_lock = threading.Lock()


def recent_papers(services: Services) -> RecentPapers:
    """The cached index while no newer paper is stored; after an ingest, only the new papers are read
    and split into words (the rest are reused), so the first request after it stays cheap too."""
    with services.sessions() as session:
        newest = session.scalar(select(func.max(Listing.id))) or 0
        cached = _recent.get(services.engine)
        if cached is not None and cached.newest_id == newest:
            return cached
        with _recent_lock:
            cached = _recent.get(services.engine)
            if cached is not None and cached.newest_id == newest:
                return cached
            known = cached.papers if cached is not None and cached.newest_id < newest else []
            query = select(Listing.id, Listing.title, Listing.abstract).order_by(Listing.id.desc())
            if known:
                query = query.where(Listing.id > known[0][0])
            fresh = [
                (listing_id, match_words(f"{title}\n{abstract}"))
                for listing_id, title, abstract in session.execute(query.limit(RECENT_PAPERS))
            ]
            built = RecentPapers((fresh + known)[:RECENT_PAPERS])
            _recent[services.engine] = built
            return built


def topic_matches(services: Services, topics: list[str]) -> list[Suggestion]:
    """How many recent papers mention each topic as typed."""
    recent = recent_papers(services)
    return [Suggestion(topic, recent.count(topic)) for topic in topics]


def _inside(short: str, long: str) -> bool:
    return short != long and f" {short} " in f" {long} "


def suggest(services: Services, prefix: str, limit: int = 8) -> list[Suggestion]:
    """Phrases that start with what was typed, then phrases with a word starting so; those recent
    papers mention most come first. Left out: phrases no recent paper mentions, and fragments, those
    recent papers mostly use only inside a longer suggested phrase ("graph neural" → "graph neural
    networks")."""
    typed = search_key(prefix[:100])
    if len(typed) < 2:
        return []
    phrases = vocabulary(services).phrases
    start = bisect_left(phrases, (typed, "", 0))
    leading: list[tuple[str, str, int]] = []
    for entry in phrases[start:]:
        if not entry[0].startswith(typed):
            break
        leading.append(entry)
    pool = 3 * limit
    by_use = sorted(leading, key=lambda e: (-e[2], len(e[1])))[:pool]
    inner = [e for e in phrases if f" {typed}" in f" {e[0]}" and not e[0].startswith(typed)]
    by_use += sorted(inner, key=lambda e: (-e[2], len(e[1])))[:pool]
    recent = recent_papers(services)
    counted = [(key, Suggestion(phrase, recent.count(phrase))) for key, phrase, _ in by_use]
    counted = [(key, s) for key, s in counted if s.papers > 0]
    whole = [
        (key, s)
        for key, s in counted
        if not any(_inside(key, other) and o.papers >= FRAGMENT_SHARE * s.papers for other, o in counted)
    ]
    starts = {key for key, _ in whole if key.startswith(typed)}
    whole.sort(key=lambda ks: (ks[0] not in starts, -ks[1].papers, len(ks[1].topic)))
    return [s for _, s in whole[:limit]]
