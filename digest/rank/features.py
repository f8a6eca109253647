"""Text to features: words and word pairs, acronyms learned from the corpus, one hashed TF-IDF space.

Why hashing: the columns of a hashed space never move, so when the IDF weights are refit as the corpus
grows (`FeatureSpace.fit`, saved atomically and versioned), every profile and every learned weight
vector still points at the right features; profiles (`digest.rank.profile`) are rebuilt from what they
are made of (keywords and votes), never from a stale vocabulary.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer

N_FEATURES = 2**20

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ACRONYM = re.compile(r"((?:[A-Za-z][\w'-]*[\s]+){1,8}?)\(\s*([A-Z][A-Za-z0-9-]{1,11}?)s?\s*\)")
_STOP = frozenset(ENGLISH_STOP_WORDS)


def _fold(word: str) -> str:
    """Plural to singular, crudely but the same way for papers and keywords, so they meet."""
    if len(word) <= 3 or word[-1] != "s" or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1]


def words(text: str) -> list[str]:
    """Lower-case words with stop words dropped; a hyphenated word gives its parts and the joined form."""
    text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode("ascii")
    out: list[str] = []
    for token in _TOKEN.findall(text):
        parts = [p for p in token.split("-") if p]
        for part in parts:
            if len(part) > 1 and part not in _STOP:
                out.append(_fold(part))
        if len(parts) > 1:
            out.append(_fold("".join(parts)))
    return out


def terms(text: str) -> list[str]:
    """Unigrams and bigrams of `words`: "graph neural network" yields "graph neural" and "neural network"."""
    unigrams = words(text)
    return unigrams + [f"{a} {b}" for a, b in pairwise(unigrams)]


def _hasher() -> HashingVectorizer:
    return HashingVectorizer(
        analyzer=terms, n_features=N_FEATURES, alternate_sign=False, norm=None, dtype=np.float32
    )


def _as_is(features: list[str]) -> list[str]:
    return features


def term_hasher() -> HashingVectorizer:
    """Hashes ready-made terms into the same columns `_hasher` puts them in from running text."""
    return HashingVectorizer(
        analyzer=_as_is, n_features=N_FEATURES, alternate_sign=False, norm=None, dtype=np.float32
    )


def term_index(term: str) -> int:
    """The column a term ("graph" or "graph neural") hashes to."""
    row = term_hasher().transform([[term]])
    return int(row.indices[0])


def term_columns(names: Sequence[str]) -> list[int]:
    """The columns of many terms at once (one hashing pass instead of one per term)."""
    if not names:
        return []
    hashed = term_hasher().transform([[name] for name in names])
    return [int(hashed.indices[hashed.indptr[row]]) for row in range(len(names))]


_LINKING_WORDS = frozenset({"of", "the", "and", "for", "in", "on", "to", "a", "an", "with", "via", "by"})


def _spells(short: str, long_words: list[str]) -> bool:
    """Whether the initials of `long_words` spell `short`: capitals only ("LoRA" → L R A) or every letter
    ("MoE" → m o e), with or without the linking words ("Mixture-of-Experts" → m o e, or m e)."""
    parts = [p for word in long_words for p in word.split("-") if p]
    all_initials = [p[0].lower() for p in parts]
    content_initials = [p[0].lower() for p in parts if p.lower() not in _LINKING_WORDS]
    capitals = [c.lower() for c in short if c.isupper() or c.isdigit()]
    letters = [c.lower() for c in short if c.isalnum()]
    return any(
        spelled == wanted for spelled in (all_initials, content_initials) for wanted in (capitals, letters)
    )


def learn_acronyms(texts: Iterable[str]) -> dict[str, str]:
    """'Low-Rank Adaptation (LoRA)' teaches lora → low-rank adaptation; the most frequent expansion wins."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        for long_form, short in _ACRONYM.findall(text):
            if sum(c.isupper() for c in short) < 2:
                continue
            long_words = re.split(r"\s+", long_form.strip())
            for start in range(len(long_words) - 1, -1, -1):
                if _spells(short, long_words[start:]):
                    seen[short.lower()][" ".join(long_words[start:]).lower()] += 1
                    break
    return {short: expansions.most_common(1)[0][0] for short, expansions in seen.items()}


@dataclass
class FeatureSpace:
    """IDF weights over the hashed columns, fitted on the corpus, plus the acronyms it taught us."""

    idf: np.ndarray
    acronyms: dict[str, str]
    n_docs: int
    version: str
    _topic_cache: dict[str, sp.csr_matrix] = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, texts: Iterable[str], *, chunk: int = 2000) -> FeatureSpace:
        """Stream the corpus once: document frequencies by chunk, acronyms from the same text."""
        hasher = _hasher()
        df = np.zeros(N_FEATURES, dtype=np.int64)
        acronym_texts: list[str] = []
        acronyms: dict[str, Counter[str]] = defaultdict(Counter)
        n_docs = 0
        for batch in _chunks(texts, chunk):
            counts = hasher.transform(batch)
            df += np.bincount(counts.indices, minlength=N_FEATURES)
            n_docs += len(batch)
            acronym_texts.extend(batch)
            if len(acronym_texts) >= 20_000:
                for short, long_form in learn_acronyms(acronym_texts).items():
                    acronyms[short][long_form] += 1
                acronym_texts = []
        for short, long_form in learn_acronyms(acronym_texts).items():
            acronyms[short][long_form] += 1
        idf = (np.log((1 + n_docs) / (1 + df)) + 1).astype(np.float32)
        learned = {short: forms.most_common(1)[0][0] for short, forms in acronyms.items()}
        return cls(
            idf=idf,
            acronyms=learned,
            n_docs=n_docs,
            version=f"{int(time.time())}-{n_docs}-{secrets.token_hex(3)}",
        )

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """Sublinear TF × IDF, each row L2-normalised, so a row product is a cosine."""
        counts = sp.csr_matrix(_hasher().transform(texts), dtype=np.float32)
        counts.data = 1.0 + np.log(counts.data)
        counts = counts.multiply(self.idf).tocsr()
        return unit_rows(counts)

    # Keywords -------------------------------------------------------------------------------------
    def expand(self, topic: str) -> str:
        """The topic as typed plus what an acronym in it stands for, or the acronym its words spell."""
        lowered = topic.lower().strip()
        extra = [self.acronyms[w] for w in re.findall(r"[a-z0-9-]+", lowered) if w in self.acronyms]
        extra += [short for short, long_form in self.acronyms.items() if long_form == lowered]
        return " ; ".join([topic, *extra])

    def topic_vector(self, topic: str) -> sp.csr_matrix:
        key = topic.casefold().strip()
        cached = self._topic_cache.get(key)
        if cached is None:
            cached = self.transform([self.expand(topic)])
            self._topic_cache[key] = cached
        return cached

    def keyword_vector(self, topics: Sequence[str]) -> sp.csr_matrix:
        return unit_rows(weighted_sum([(1.0, self.topic_vector(topic)) for topic in topics]))

    # Persistence ----------------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the space under its version, then point `current` at it: readers never see half a model."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"space-{self.version}.npz"
        unique = secrets.token_hex(6)  # writers in other threads and processes never share a temp file
        temporary = directory / f".space-{self.version}.{unique}.tmp.npz"
        np.savez_compressed(
            temporary,
            idf=self.idf,
            meta=np.array(
                json.dumps({"acronyms": self.acronyms, "n_docs": self.n_docs, "version": self.version})
            ),
        )
        os.replace(temporary, target)
        pointer = directory / f".current.{unique}.tmp"
        pointer.write_text(target.name, encoding="utf-8")
        os.replace(pointer, directory / "current")
        return target

    @classmethod
    def load(cls, directory: Path) -> FeatureSpace | None:
        pointer = directory / "current"
        if not pointer.exists():
            return None
        with np.load(directory / pointer.read_text(encoding="utf-8").strip()) as stored:
            meta = json.loads(str(stored["meta"]))
            return cls(
                idf=stored["idf"], acronyms=meta["acronyms"], n_docs=meta["n_docs"], version=meta["version"]
            )


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to length 1 (empty rows stay empty), working on the stored values directly."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    lengths = np.diff(matrix.indptr)
    squares = np.zeros(matrix.shape[0], dtype=np.float64)
    filled = lengths > 0
    if filled.any():
        squares[filled] = np.add.reduceat(matrix.data.astype(np.float64) ** 2, matrix.indptr[:-1][filled])
    norms = np.sqrt(squares)
    norms[norms == 0] = 1.0
    matrix.data = (matrix.data / np.repeat(norms, lengths)).astype(np.float32)
    return matrix


def weighted_sum(parts: Sequence[tuple[float, sp.csr_matrix]]) -> sp.csr_matrix:
    """Σ weight × (sum of the rows of matrix), as one row.

    Built from the stored values directly: a sparse product or sum over a million columns allocates a
    million-wide workspace each time, which costs more than everything else a vote does.
    """
    data = [weight * np.asarray(rows.data, dtype=np.float32) for weight, rows in parts if rows.nnz]
    indices = [rows.indices for _, rows in parts if rows.nnz]
    if not data:
        return sp.csr_matrix((1, N_FEATURES), dtype=np.float32)
    values, columns = np.concatenate(data), np.concatenate(indices)
    row = sp.csr_matrix(
        (values, columns, np.array([0, len(columns)])), shape=(1, N_FEATURES), dtype=np.float32
    )
    row.sum_duplicates()
    return row


def centroid(rows: sp.csr_matrix) -> sp.csr_matrix:
    """The mean row, kept sparse (a dense mean over a million columns costs more than everything else)."""
    return weighted_sum([(1.0 / rows.shape[0], rows)])


# The title is read this many times: it names what the paper is about, the abstract also what it is not.
TITLE_REPEATS = 2


def listing_text(title: str, abstract: str) -> str:
    return f"{title}. " * TITLE_REPEATS + abstract
