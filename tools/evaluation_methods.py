"""The reference methods the product is measured against: random, scikit-learn TF-IDF keywords, Rocchio,
and a per-user LinearSVC as arxiv-sanity-lite trains it. "ours" is the product (`evaluation_product`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from tools.evaluation import SHOWN, Day, Method, Reader

# The textbook Rocchio weights, fixed here so that retuning the product's ranking does not move the baseline.
ROCCHIO_LIKED = 0.75
ROCCHIO_DISLIKED = 0.25


def _order(values: np.ndarray) -> list[int]:
    """Best first; ties keep batch order (itself a seeded shuffle), so no method gains from file order."""
    return [int(i) for i in np.argsort(-values, kind="stable")]


class _Reference:
    """What the reference methods share: votes kept per reader, top ten of a score per reader."""

    name = "reference"

    def __init__(self) -> None:
        self.more: dict[int, list[int]] = {}
        self.less: dict[int, list[int]] = {}

    def start(self, readers: Sequence[Reader]) -> None:
        self.more = {r.index: [] for r in readers}
        self.less = {r.index: [] for r in readers}

    def prepare(self, day: Day) -> None:
        pass

    def batch_scores(self, day: Day, reader: Reader) -> np.ndarray:
        raise NotImplementedError

    def show(self, day: Day, readers: Sequence[Reader]) -> dict[int, list[int]]:
        self.prepare(day)
        return {r.index: [day.start + i for i in _order(self.batch_scores(day, r))[:SHOWN]] for r in readers}

    def vote(self, reader: Reader, row: int, more: bool) -> None:
        (self.more if more else self.less)[reader.index].append(row)

    def finish(self) -> None:
        pass


class RandomMethod(_Reference):
    name = "random"

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def batch_scores(self, day: Day, reader: Reader) -> np.ndarray:
        return np.random.default_rng([self.seed, day.number, reader.index]).random(day.stop - day.start)


class _PlainTfidf(_Reference):
    """An ordinary vocabulary TF-IDF (scikit-learn, word 1-2-grams) refit on the corpus every day."""

    def __init__(self) -> None:
        super().__init__()
        self.vectorizer: TfidfVectorizer | None = None
        self.corpus: sp.csr_matrix | None = None

    def prepare(self, day: Day) -> None:
        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, stop_words="english", max_features=20_000, min_df=1
        )
        self.corpus = sp.csr_matrix(
            self.vectorizer.fit_transform(f"{p.title}. {p.abstract}" for p in day.papers)
        )

    def fitted(self) -> tuple[TfidfVectorizer, sp.csr_matrix]:
        if self.vectorizer is None or self.corpus is None:
            raise RuntimeError("prepare() was not called for this day")
        return self.vectorizer, self.corpus

    def keyword_scores(self, day: Day, reader: Reader) -> np.ndarray:
        vectorizer, corpus = self.fitted()
        query = vectorizer.transform([reader.keywords])
        return np.asarray((corpus[day.start : day.stop] @ query.T).toarray()).ravel()


class KeywordsMethod(_PlainTfidf):
    name = "keywords"

    def batch_scores(self, day: Day, reader: Reader) -> np.ndarray:
        return self.keyword_scores(day, reader)


class RocchioMethod(_PlainTfidf):
    name = "rocchio"

    def batch_scores(self, day: Day, reader: Reader) -> np.ndarray:
        vectorizer, corpus = self.fitted()
        vector = sp.csr_matrix(vectorizer.transform([reader.keywords]))
        more, less = self.more[reader.index], self.less[reader.index]
        if more:
            vector = vector + ROCCHIO_LIKED * sp.csr_matrix(corpus[more].mean(axis=0))
        if less:
            vector = vector - ROCCHIO_DISLIKED * sp.csr_matrix(corpus[less].mean(axis=0))
        return np.asarray((corpus[day.start : day.stop] @ vector.T).toarray()).ravel()


class SvmMethod(_PlainTfidf):
    """As arxiv-sanity-lite ranks: a linear SVM per user, retrained from scratch on the whole corpus, the
    user's liked papers against every other paper. "Less" votes carry no signal there, so none here."""

    name = "svm"

    def batch_scores(self, day: Day, reader: Reader) -> np.ndarray:
        _, corpus = self.fitted()
        labels = np.zeros(corpus.shape[0], dtype=np.int8)
        labels[self.more[reader.index]] = 1
        if not labels.any() or labels.all():
            return self.keyword_scores(day, reader)
        model = LinearSVC(class_weight="balanced", C=0.01, max_iter=10_000, tol=1e-6, random_state=0)
        model.fit(corpus, labels)
        return np.asarray(model.decision_function(corpus[day.start : day.stop]))


def reference_methods(seed: int) -> list[Method]:
    return [RandomMethod(seed), KeywordsMethod(), RocchioMethod(), SvmMethod()]


def standard_methods(seed: int) -> list[Method]:
    from tools.evaluation_product import ProductMethod

    return [*reference_methods(seed), ProductMethod()]
