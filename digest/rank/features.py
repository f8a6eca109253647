"""Relevance: one hashed TF-IDF feature space, one weight vector per subscriber, one sparse product a day.

Why hashing: the columns of a hashed space never move, so when the IDF weights are refit as the corpus
grows (`FeatureSpace.fit`, saved atomically and versioned), every profile and every learned weight
vector still points at the right features; profiles are rebuilt from what they are made of (keywords and
votes), never from a stale vocabulary.

A profile starts as the subscriber's keywords (phrases kept, acronyms expanded both ways, plurals folded),
sharpened by pseudo-relevance feedback from the corpus. Votes move it Rocchio-style; once a subscriber
has voted enough, a logistic regression trained on their votes (with a sample of other papers as weak
negatives) is blended with the keyword prior. Either way the profile is one sparse row, so scoring every
subscriber against the day's listings is a single sparse matrix product.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer
from sklearn.linear_model import LogisticRegression

N_FEATURES = 2**20
KEYWORD_WEIGHT = 1.0
LIKED_WEIGHT = 0.75
DISLIKED_WEIGHT = 0.25
PSEUDO_FEEDBACK_DOCS = 5
PSEUDO_FEEDBACK_WEIGHT = 0.3
# Votes needed before a learned model joins the keyword prior, and how fast it takes over.
MIN_VOTES_TO_LEARN = 4
MIN_LIKES_TO_LEARN = 2
LEARNED_HALF_WEIGHT_VOTES = 8
MAX_LEARNED_SHARE = 0.8
LEARNED_FEATURES_KEPT = 4000
WEAK_NEGATIVES = 200
WEAK_NEGATIVE_WEIGHT = 0.2
REASON_TERMS = 3
# Maximal marginal relevance: how much a near-repeat of a chosen paper is penalised, among how many.
DIVERSITY = 0.1
MMR_POOL = 30
# A topic is named as typed when the paper carries at least this share of its (idf-weighted) terms.
TOPIC_MATCH_SHARE = 0.5

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


def _term_hasher() -> HashingVectorizer:
    """Hashes ready-made terms into the same columns `_hasher` puts them in from running text."""
    return HashingVectorizer(
        analyzer=_as_is, n_features=N_FEATURES, alternate_sign=False, norm=None, dtype=np.float32
    )


def term_index(term: str) -> int:
    """The column a term ("graph" or "graph neural") hashes to."""
    row = _term_hasher().transform([[term]])
    return int(row.indices[0])


def term_columns(names: Sequence[str]) -> list[int]:
    """The columns of many terms at once (one hashing pass instead of one per term)."""
    if not names:
        return []
    hashed = _term_hasher().transform([[name] for name in names])
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
        return _unit_rows(counts)

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
        vector = sp.csr_matrix((1, N_FEATURES), dtype=np.float32)
        for topic in topics:
            vector = vector + self.topic_vector(topic)
        return _unit_rows(sp.csr_matrix(vector))

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


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
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


def _combine(parts: Sequence[tuple[float, sp.csr_matrix]]) -> sp.csr_matrix:
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


def _centroid(rows: sp.csr_matrix) -> sp.csr_matrix:
    """The mean row, kept sparse (a dense mean over a million columns costs more than everything else)."""
    return _combine([(1.0 / rows.shape[0], rows)])


# The title is read this many times: it names what the paper is about, the abstract also what it is not.
TITLE_REPEATS = 2


def listing_text(title: str, abstract: str) -> str:
    return f"{title}. " * TITLE_REPEATS + abstract


# Profiles -----------------------------------------------------------------------------------------


@dataclass
class Votes:
    """A subscriber's votes as document rows in the feature space."""

    liked: sp.csr_matrix
    disliked: sp.csr_matrix

    @property
    def count(self) -> int:
        return int(self.liked.shape[0] + self.disliked.shape[0])


def pseudo_feedback(space: FeatureSpace, keyword: sp.csr_matrix, corpus: sp.csr_matrix) -> sp.csr_matrix:
    """Cold start: lean the keywords toward the corpus papers they match best (the top few, weighted)."""
    if keyword.nnz == 0 or corpus.shape[0] == 0:
        return keyword
    scores = np.asarray((corpus @ keyword.T).todense()).ravel()
    top = np.argsort(-scores)[:PSEUDO_FEEDBACK_DOCS]
    top = top[scores[top] > 0]
    if len(top) == 0:
        return keyword
    centroid = _centroid(corpus[top])
    return _unit_rows(_combine([(1.0, keyword), (PSEUDO_FEEDBACK_WEIGHT, centroid)]))


class KeywordProfiles:
    """Subscribers' keyword priors, built for a whole block of subscribers in one sparse product.

    Each distinct topic is vectorised and sharpened by pseudo-relevance feedback once per run (there are
    far fewer topics than subscribers); a subscriber's prior is the normalised sum of their topics' rows.
    """

    def __init__(self, space: FeatureSpace, corpus: sp.csr_matrix) -> None:
        self.space = space
        self.corpus = corpus
        self._row_of: dict[str, int] = {}
        self._rows: list[sp.csr_matrix] = []
        self._stacked: sp.csr_matrix | None = None
        self._products: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def _topic_row(self, topic: str) -> int:
        key = topic.casefold().strip()
        row = self._row_of.get(key)
        if row is None:
            row = len(self._rows)
            self._rows.append(pseudo_feedback(self.space, self.space.topic_vector(topic), self.corpus))
            self._row_of[key] = row
            self._stacked = None
        return row

    def matrix(self, topic_lists: Sequence[Sequence[str]]) -> sp.csr_matrix:
        membership_rows, membership_cols = [], []
        for subscriber, topics in enumerate(topic_lists):
            for topic in topics:
                membership_rows.append(subscriber)
                membership_cols.append(self._topic_row(topic))
        if self._stacked is None:
            self._stacked = (
                sp.vstack(self._rows, format="csr") if self._rows else sp.csr_matrix((0, N_FEATURES))
            )
        membership = sp.csr_matrix(
            (np.ones(len(membership_rows), dtype=np.float32), (membership_rows, membership_cols)),
            shape=(len(topic_lists), len(self._rows)),
        )
        return _unit_rows(membership @ self._stacked)

    def vector(self, topics: Sequence[str]) -> sp.csr_matrix:
        """One subscriber's prior, summed from the stored values (no million-column product)."""
        rows = [self._topic_row(topic) for topic in topics]
        return _unit_rows(_combine([(1.0, self._rows[row]) for row in rows]))

    def scores(self, docs: sp.csr_matrix, topic_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """`scores(docs, self.matrix(topic_lists))` without building a row per subscriber.

        A prior is a normalised sum of topic rows T, so docs·prior = (docs·Tᵀ)·a / ‖a·T‖ for the
        subscriber's topic indicator a: one small dense product per block instead of a sparse one
        whose size grows with every subscriber's terms.
        """
        indices = [[self._topic_row(t) for t in topics] for topics in topic_lists]
        membership = np.zeros((len(topic_lists), len(self._rows)), dtype=np.float32)
        for subscriber, rows in enumerate(indices):
            membership[subscriber, rows] = 1.0
        key = (id(docs), len(self._rows))
        if self._products is None or self._products[0] != key:
            # Once per run, plus once more for each block that brings topics no earlier block had.
            if self._stacked is None:
                self._stacked = (
                    sp.vstack(self._rows, format="csr") if self._rows else sp.csr_matrix((0, N_FEATURES))
                )
            doc_topic = np.asarray((docs @ self._stacked.T).toarray(), dtype=np.float32)
            gram = np.asarray((self._stacked @ self._stacked.T).toarray(), dtype=np.float32)
            self._products = (key, doc_topic, gram)
        _, doc_topic, gram = self._products
        norms = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", membership, gram, membership), 0))
        norms[norms == 0] = 1.0
        return (doc_topic @ membership.T) / norms[None, :]


def rocchio(keyword: sp.csr_matrix, votes: Votes) -> sp.csr_matrix:
    parts = [(KEYWORD_WEIGHT, keyword)]
    if votes.liked.shape[0]:
        parts.append((LIKED_WEIGHT / votes.liked.shape[0], votes.liked))
    if votes.disliked.shape[0]:
        parts.append((-DISLIKED_WEIGHT / votes.disliked.shape[0], votes.disliked))
    return _unit_rows(_combine(parts))


def can_learn(votes: Votes) -> bool:
    return votes.count >= MIN_VOTES_TO_LEARN and votes.liked.shape[0] >= MIN_LIKES_TO_LEARN


def train_learned(votes: Votes, background: sp.csr_matrix, seed: int = 0) -> sp.csr_matrix | None:
    """A per-subscriber linear classifier: liked vs disliked, with other papers as weak negatives.

    Its cost depends on the subscriber's votes and the fixed background sample, not on the corpus size.
    Only the strongest weights are kept, so the learned row stays sparse and cheap to score.
    """
    if not can_learn(votes):
        return None
    rng = np.random.default_rng(seed)
    sample = background[
        rng.choice(background.shape[0], min(WEAK_NEGATIVES, background.shape[0]), replace=False)
    ]
    features = sp.vstack([votes.liked, votes.disliked, sample], format="csr")
    labels = np.r_[np.ones(votes.liked.shape[0]), np.zeros(votes.disliked.shape[0] + sample.shape[0])]
    weights = np.r_[np.ones(votes.count), np.full(sample.shape[0], WEAK_NEGATIVE_WEIGHT)]
    # Fit on the columns the training papers use, not all 2^20: the solver's cost grows with the width.
    features.sum_duplicates()
    used = np.unique(features.indices)
    narrow = sp.csr_matrix(
        (features.data, np.searchsorted(used, features.indices), features.indptr),
        shape=(features.shape[0], len(used)),
    )
    model = LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear", max_iter=200)
    model.fit(narrow, labels, sample_weight=weights)
    coef = model.coef_.ravel().astype(np.float32)
    keep = np.argsort(-np.abs(coef))[:LEARNED_FEATURES_KEPT]
    keep = keep[coef[keep] != 0]
    learned = sp.csr_matrix(
        (coef[keep], (np.zeros(len(keep), dtype=np.int64), used[keep])), shape=(1, N_FEATURES)
    )
    return _unit_rows(learned)


def learned_share(votes: Votes) -> float:
    """How much of the profile the learned model gets: more votes, more trust, never all of it."""
    return min(MAX_LEARNED_SHARE, votes.count / (votes.count + LEARNED_HALF_WEIGHT_VOTES))


def profile(keyword: sp.csr_matrix, votes: Votes, learned: sp.csr_matrix | None) -> sp.csr_matrix:
    moved = rocchio(keyword, votes)
    if learned is None or learned.nnz == 0:
        return moved
    share = learned_share(votes)
    return _unit_rows(_combine([(1 - share, moved), (share, learned)]))


# Scoring and choosing ----------------------------------------------------------------------------


def scores(docs: sp.csr_matrix, profiles: sp.csr_matrix) -> np.ndarray:
    """(documents × subscribers) cosine-like scores in one sparse product."""
    if docs.shape[0] == 0 or profiles.shape[0] == 0:
        return np.zeros((docs.shape[0], profiles.shape[0]), dtype=np.float32)
    return np.asarray((docs @ profiles.T).toarray(), dtype=np.float32)


def choose(
    column: np.ndarray,
    allowed: np.ndarray,
    similarity: np.ndarray | None,
    k: int,
    *,
    threshold: float,
    diversity: float | None = None,
    pool: int | None = None,
) -> list[tuple[int, float]]:
    """`choose_block` for one subscriber."""
    return choose_block(
        column[:, None], allowed[:, None], similarity, k, threshold=threshold, diversity=diversity, pool=pool
    )[0]


def choose_block(
    block: np.ndarray,
    allowed: np.ndarray,
    similarity: np.ndarray | None,
    k: int,
    *,
    threshold: float,
    diversity: float | None = None,
    pool: int | None = None,
) -> list[list[tuple[int, float]]]:
    """For each column (subscriber), the k best allowed rows above `threshold` by maximal marginal relevance.

    `similarity` is the documents' own cosine matrix (computed once per run); an item that nearly repeats
    one already chosen loses `diversity` times that similarity, so one email does not carry three versions
    of the same paper. The greedy selection runs for all the block's subscribers at once: the cost per
    subscriber is a few vector operations, not a Python loop.
    """
    diversity = DIVERSITY if diversity is None else diversity
    pool = MMR_POOL if pool is None else pool
    n_docs, n_subscribers = block.shape
    if n_docs == 0 or n_subscribers == 0 or k <= 0:
        return [[] for _ in range(n_subscribers)]
    # Subscribers as rows, so each one's papers lie together in memory for the partial sort.
    masked = np.where((allowed & (block > threshold)).T, block.T, -np.inf).astype(np.float32, copy=False)
    take = min(pool, n_docs)
    candidates = np.argpartition(-masked, take - 1, axis=1)[:, :take]  # (subscribers, take)
    candidate_scores = np.take_along_axis(masked, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    candidates = np.take_along_axis(candidates, order, axis=1)
    candidate_scores = np.take_along_axis(candidate_scores, order, axis=1)
    eligible = np.isfinite(candidate_scores)

    if similarity is None or diversity <= 0:
        picks = np.arange(min(k, take))[None, :].repeat(n_subscribers, axis=0)
        valid = np.take_along_axis(eligible, picks, axis=1)
    else:
        pair_similarity = similarity[candidates[:, :, None], candidates[:, None, :]]  # (subs, take, take)
        redundancy = np.zeros_like(candidate_scores)
        available = eligible.copy()
        picks = np.zeros((n_subscribers, min(k, take)), dtype=np.int64)
        valid = np.zeros(picks.shape, dtype=bool)
        rows = np.arange(n_subscribers)
        for step in range(picks.shape[1]):
            gains = np.where(available, candidate_scores - diversity * redundancy, -np.inf)
            best = np.argmax(gains, axis=1)
            picks[:, step] = best
            valid[:, step] = np.isfinite(gains[rows, best])
            available[rows, best] = False
            redundancy = np.maximum(redundancy, pair_similarity[rows, best, :])
    result: list[list[tuple[int, float]]] = []
    for subscriber in range(n_subscribers):
        chosen = []
        for position, ok in zip(picks[subscriber], valid[subscriber], strict=True):
            if ok:
                chosen.append(
                    (int(candidates[subscriber, position]), float(candidate_scores[subscriber, position]))
                )
        result.append(chosen)
    return result


# Reasons -----------------------------------------------------------------------------------------


class Explainer:
    """Names what pulled a paper in. Hashing forgets words, so the day's papers are re-read once per run
    to map their columns back to terms; each reason is then a few dictionary lookups."""

    def __init__(self, space: FeatureSpace, texts: Mapping[int, str], docs: sp.csr_matrix) -> None:
        self.space = space
        self._texts = texts
        self._docs = docs
        self._terms: dict[int, dict[int, str]] = {}
        self._weights: dict[int, dict[int, float]] = {}
        self._topics: dict[str, tuple[dict[int, float], float]] = {}
        self._matches: dict[tuple[int, str], tuple[float | None, dict[int, float]]] = {}
        self._reasons: dict[tuple[int, tuple[str, ...]], str] = {}

    def _present(self, row: int) -> dict[int, float]:
        known = self._weights.get(row)
        if known is None:
            start, end = self._docs.indptr[row], self._docs.indptr[row + 1]
            known = dict(
                zip(self._docs.indices[start:end].tolist(), self._docs.data[start:end].tolist(), strict=True)
            )
            self._weights[row] = known
        return known

    def _columns(self, row: int) -> dict[int, str]:
        known = self._terms.get(row)
        if known is None:
            names = sorted(set(terms(self._texts[row])))
            hashed = _term_hasher().transform([[name] for name in names]) if names else None
            known = {}
            if hashed is not None:
                for position, name in enumerate(names):
                    start, end = hashed.indptr[position], hashed.indptr[position + 1]
                    if end > start:
                        known[int(hashed.indices[start])] = name
            self._terms[row] = known
        return known

    def _topic(self, topic: str) -> tuple[dict[int, float], float]:
        known = self._topics.get(topic)
        if known is None:
            vector = self.space.topic_vector(topic)
            weights = dict(zip(vector.indices.tolist(), vector.data.tolist(), strict=True))
            known = (weights, sum(weights.values()))
            self._topics[topic] = known
        return known

    def reason(
        self,
        row: int,
        topics: Sequence[str],
        profile: Mapping[int, float] | None = None,
        liked: Sequence[tuple[str, float]] = (),
    ) -> str:
        """The topics as typed that the paper covers, the liked paper it is most like, or failing both
        the subscriber's terms it contains (weighted by `profile`, column → weight, when given).

        `liked` holds each liked paper's title and its similarity to this paper (see `liked_similarity`).
        """
        if profile is None and not liked:
            # Most readers have not voted: their reason depends on the paper and the topics alone, and
            # the same topics come back for many readers of a run.
            key = (row, tuple(sorted(topics)))
            known = self._reasons.get(key)
            if known is None:
                known = self._reason(row, topics, None, ())
                self._reasons[key] = known
            return known
        return self._reason(row, topics, profile, liked)

    def liked_similarity(self, liked: sp.csr_matrix) -> np.ndarray:
        """(papers × liked papers) cosines for the run's papers, in one product for a whole block."""
        if liked.shape[0] == 0:
            return np.zeros((self._docs.shape[0], 0), dtype=np.float32)
        return np.asarray((self._docs @ liked.T).toarray(), dtype=np.float32)

    def _match(self, row: int, topic: str) -> tuple[float | None, dict[int, float]]:
        """How strongly the paper covers a topic as typed (None when it does not), else its loose hits."""
        key = (row, topic)
        known = self._matches.get(key)
        if known is None:
            present = self._present(row)
            weights, total = self._topic(topic)
            hit = {f: w for f, w in weights.items() if f in present}
            if hit and sum(hit.values()) >= TOPIC_MATCH_SHARE * total:
                known = (sum(present[f] * w for f, w in hit.items()), {})
            else:
                known = (None, hit)
            self._matches[key] = known
        return known

    def _reason(
        self,
        row: int,
        topics: Sequence[str],
        profile: Mapping[int, float] | None,
        liked: Sequence[tuple[str, float]],
    ) -> str:
        present = self._present(row)
        matched: list[tuple[float, str]] = []
        loose: dict[int, float] = {}
        for topic in topics:
            strength, hit = self._match(row, topic)
            if strength is not None:
                matched.append((strength, topic))
            else:
                loose.update(hit)
        parts = []
        if matched:
            parts.append(
                "matches your topics: "
                + ", ".join(t for _, t in sorted(matched, reverse=True)[:REASON_TERMS])
            )
        if liked:
            title, similarity = max(liked, key=lambda pair: pair[1])
            if similarity > 0.1:
                parts.append(f"like “{title}”, which you asked for more of")
        if not parts:
            weights = loose if profile is None else profile
            names = self._columns(row)
            contributions = sorted(
                (
                    (value * weights[f], names[f])
                    for f, value in present.items()
                    if f in names and weights.get(f, 0.0) > 0
                ),
                key=lambda pair: (-round(pair[0], 6), -pair[1].count(" ")),
            )
            chosen: list[str] = []
            for _, term in contributions:
                if not any(
                    set(term.split()) <= set(c.split()) or set(c.split()) <= set(term.split()) for c in chosen
                ):
                    chosen.append(term)
                if len(chosen) >= REASON_TERMS:
                    break
            if chosen:
                parts.append("matches: " + ", ".join(chosen))
        text = "; ".join(parts) or "related to your interests"
        return text[0].upper() + text[1:]
