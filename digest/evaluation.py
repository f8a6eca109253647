"""`digest evaluate`: replay the labelled listings as a run of days and score each ranking method the way
a subscriber would meet it.

Offline metrics on one static split say little about a digest: what matters is what lands in the top ten
of today's email, and how quickly the ranking improves once the subscriber starts voting. So the replay
walks through daily batches; every method shows its top ten to one simulated subscriber per labelled topic;
the labels play the subscriber, voting "more" on every relevant paper shown and "less" on every other one;
and the votes carry into the following days. Each method only ever sees the papers published so far.

Each method gets its own copy of the subscribers, because what a subscriber can vote on depends on what
that method chose to show them.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from digest import ranking
from digest.listing_formats import ParsedListing, SourceLine, normalize_title, parse_listing_text
from digest.stats import EVALUATION_METRICS, EvaluationFigures, save_evaluation
from digest.subscriptions import parse_topics
from digest.tables import text_table

SHOWN = 10
PRECISION_AT = 5
DEFAULT_DAYS = 8
DEFAULT_SEED = 7
DEFAULT_PLOT_PATH = Path("var") / "evaluation.png"
DEFAULT_LABELS = Path(__file__).resolve().parent / "evaluation_labels.tsv"
# The textbook Rocchio weights, fixed here so that retuning `digest.ranking` does not move the baseline.
ROCCHIO_LIKED = 0.75
ROCCHIO_DISLIKED = 0.25
# The production default of `ranking.choose`; read from its signature so a retune there is evaluated too.
PRODUCTION_DIVERSITY: float = inspect.signature(ranking.choose).parameters["diversity"].default


# Metrics -----------------------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[object], relevant: Collection[object], k: int = SHOWN) -> float | None:
    """Binary-gain nDCG: None when nothing is relevant, so a day without matches is left out of averages
    rather than counted as a perfect (or a failed) email."""
    if not relevant:
        return None
    dcg = sum(1.0 / math.log2(position + 2) for position, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(position + 2) for position in range(min(k, len(relevant))))
    return dcg / ideal


def precision_at_k(
    ranked: Sequence[object], relevant: Collection[object], k: int = PRECISION_AT
) -> float | None:
    """Share of the first k shown that are relevant; None when nothing is relevant, as for nDCG."""
    if not relevant:
        return None
    return sum(1 for item in ranked[:k] if item in relevant) / k


# Data --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    abstract: str

    @property
    def text(self) -> str:
        return ranking.listing_text(self.title, self.abstract)


@dataclass(frozen=True)
class Labels:
    """Topic id → keywords as a subscriber would type them, and paper key → the topics it is relevant to."""

    topics: dict[str, str]
    relevant: dict[str, frozenset[str]]


def paper_key(title: str) -> str:
    return hashlib.sha256(normalize_title(title).encode()).hexdigest()[:16]


def read_labels(path: Path) -> Labels:
    topics: dict[str, str] = {}
    relevant: dict[str, frozenset[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# topic "):
            topic, _, keywords = line.removeprefix("# topic ").partition("\t")
            topics[topic.strip()] = keywords.strip()
        elif line.startswith("#") or not line.strip():
            continue
        else:
            key, tab, names = line.partition("\t")
            if not tab:
                raise ValueError(f"{path}:{number}: expected '<key><TAB><topics>', got {line!r}")
            relevant[key] = frozenset(n for n in names.strip().split(",") if n)
    return Labels(topics, relevant)


def read_papers(listings_dir: Path) -> list[Paper]:
    """Every distinct paper in the listing dumps, first spelling kept, parsed as ingestion parses them."""
    files = sorted(listings_dir.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no listing dumps (*.txt) in {listings_dir}")
    papers: dict[str, Paper] = {}
    for path in files:
        with path.open(encoding="utf-8") as fh:
            lines = (SourceLine(number, text.rstrip("\n")) for number, text in enumerate(fh, 1))
            for parsed in parse_listing_text(lines):
                if isinstance(parsed, ParsedListing):
                    key = paper_key(parsed.title)
                    papers.setdefault(key, Paper(key, parsed.title, parsed.abstract))
    return list(papers.values())


# The replay --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    """Day `number` (1-based): the corpus published so far, whose rows `start:stop` are today's batch."""

    number: int
    texts: Sequence[str]
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Subscriber:
    """One simulated subscriber; votes are corpus rows, kept for good (a row's paper never moves)."""

    index: int
    topic: str
    keywords: str
    more: list[int] = field(default_factory=list)
    less: list[int] = field(default_factory=list)

    def observe(self, shown: Sequence[int], relevant: Collection[int]) -> None:
        """The subscriber the labels stand for: "more" on each relevant paper shown, "less" on the rest."""
        for row in shown:
            (self.more if row in relevant else self.less).append(row)


class Method(Protocol):
    """A ranking method as the replay drives it.

    `prepare` is the day's shared work (fitting a vectorizer on the corpus), paid once however many
    subscribers there are; `rank` is one subscriber's work and returns positions within today's batch,
    best first, at least `SHOWN` of them. Methods keep no memory of their own between days: everything
    they learn from is the corpus and the subscriber's accumulated votes, as after a daily retrain.
    """

    name: str

    def prepare(self, day: Day) -> None: ...

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]: ...


def _order(values: np.ndarray) -> list[int]:
    """Best first; ties keep batch order (itself a seeded shuffle), so no method gains from file order."""
    return [int(i) for i in np.argsort(-values, kind="stable")]


class RandomMethod:
    name = "random"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def prepare(self, day: Day) -> None:
        pass

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        rng = np.random.default_rng([self.seed, day.number, subscriber.index])
        return [int(i) for i in rng.permutation(day.size)]


class _PlainTfidf:
    """Shared by the baselines: an ordinary vocabulary TF-IDF refit on the corpus every day."""

    def __init__(self) -> None:
        self.vectorizer: TfidfVectorizer | None = None
        self.corpus: sp.csr_matrix | None = None

    def prepare(self, day: Day) -> None:
        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, stop_words="english", max_features=20_000, min_df=1
        )
        self.corpus = sp.csr_matrix(self.vectorizer.fit_transform(day.texts))

    def _fitted(self) -> tuple[TfidfVectorizer, sp.csr_matrix]:
        if self.vectorizer is None or self.corpus is None:
            raise RuntimeError("prepare() was not called for this day")
        return self.vectorizer, self.corpus

    def keyword_scores(self, day: Day, subscriber: Subscriber) -> np.ndarray:
        vectorizer, corpus = self._fitted()
        query = vectorizer.transform([subscriber.keywords])
        return np.asarray((corpus[day.start : day.stop] @ query.T).toarray()).ravel()


class KeywordsMethod(_PlainTfidf):
    name = "keywords"

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        return _order(self.keyword_scores(day, subscriber))


class RocchioMethod(_PlainTfidf):
    name = "rocchio"

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        vectorizer, corpus = self._fitted()
        vector = sp.csr_matrix(vectorizer.transform([subscriber.keywords]))
        if subscriber.more:
            vector = vector + ROCCHIO_LIKED * sp.csr_matrix(corpus[subscriber.more].mean(axis=0))
        if subscriber.less:
            vector = vector - ROCCHIO_DISLIKED * sp.csr_matrix(corpus[subscriber.less].mean(axis=0))
        return _order(np.asarray((corpus[day.start : day.stop] @ vector.T).toarray()).ravel())


class SvmMethod(_PlainTfidf):
    """As arxiv-sanity-lite ranks: a linear SVM per user, retrained from scratch on the whole corpus, the
    user's liked papers against every other paper. "Less" votes carry no signal there, so none here."""

    name = "svm"

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        _, corpus = self._fitted()
        labels = np.zeros(corpus.shape[0], dtype=np.int8)
        labels[subscriber.more] = 1
        if not labels.any() or labels.all():
            return _order(self.keyword_scores(day, subscriber))
        model = LinearSVC(class_weight="balanced", C=0.01, max_iter=10_000, tol=1e-6, random_state=0)
        model.fit(corpus, labels)
        return _order(np.asarray(model.decision_function(corpus[day.start : day.stop])))


class OursMethod:
    """`digest.ranking` composed as `daily._rank` composes it, with the corpus so far as the background
    (production uses its most recent papers, which here is all of them) and `choose` doing the MMR."""

    name = "ours"

    def __init__(self, seed: int, *, diversity: float | None = None) -> None:
        self.seed = seed
        self.diversity = PRODUCTION_DIVERSITY if diversity is None else diversity
        self.space: ranking.FeatureSpace | None = None
        self.corpus: sp.csr_matrix | None = None
        self.similarity: np.ndarray | None = None
        self.priors: ranking.KeywordProfiles | None = None

    def prepare(self, day: Day) -> None:
        self.space = ranking.FeatureSpace.fit(day.texts)
        self.corpus = self.space.transform(day.texts)
        self.priors = ranking.KeywordProfiles(self.space, self.corpus)
        todays = self.corpus[day.start : day.stop]
        self.similarity = (todays @ todays.T).toarray()

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        if self.space is None or self.corpus is None or self.priors is None:
            raise RuntimeError("prepare() was not called for this day")
        corpus = self.corpus
        keyword = self.priors.vector(parse_topics(subscriber.keywords))
        votes = ranking.Votes(corpus[subscriber.more], corpus[subscriber.less])
        learned = (
            ranking.train_learned(votes, corpus, seed=self.seed + subscriber.index)
            if ranking.can_learn(votes)
            else None
        )
        vector = ranking.profile(keyword, votes, learned)
        column = ranking.scores(corpus[day.start : day.stop], vector)[:, 0]
        picked = ranking.choose(
            column,
            np.ones(day.size, dtype=bool),
            self.similarity,
            SHOWN,
            threshold=0.0,
            diversity=self.diversity,
        )
        order = [position for position, _ in picked]
        taken = set(order)
        return order + [position for position in _order(column) if position not in taken]


def standard_methods(seed: int) -> list[Method]:
    return [RandomMethod(seed), KeywordsMethod(), RocchioMethod(), SvmMethod(), OursMethod(seed)]


# Results -----------------------------------------------------------------------------------------------


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass
class MethodResult:
    """One method's replay. `ndcg[d][s]` is subscriber s on day d+1, None when that day had nothing
    relevant for them. "Later" pools every subscriber-day after the first (not a mean of daily means)."""

    name: str
    ndcg: list[list[float | None]] = field(default_factory=list)
    precision: list[list[float | None]] = field(default_factory=list)
    rank_seconds: float = 0.0
    prepare_seconds: float = 0.0
    rankings: int = 0

    @property
    def ndcg_by_day(self) -> list[float | None]:
        return [_mean(day) for day in self.ndcg]

    @property
    def ndcg_first(self) -> float | None:
        return _mean(self.ndcg[0]) if self.ndcg else None

    @property
    def ndcg_later(self) -> float | None:
        return _mean([v for day in self.ndcg[1:] for v in day])

    @property
    def precision_first(self) -> float | None:
        return _mean(self.precision[0]) if self.precision else None

    @property
    def precision_later(self) -> float | None:
        return _mean([v for day in self.precision[1:] for v in day])

    @property
    def ms_per_subscriber_day(self) -> float:
        return 1000 * self.rank_seconds / self.rankings if self.rankings else 0.0

    @property
    def shared_ms_per_day(self) -> float:
        return 1000 * self.prepare_seconds / len(self.ndcg) if self.ndcg else 0.0


@dataclass
class EvaluationResult:
    papers: int
    subscribers: list[str]
    days: int
    seed: int
    batch_sizes: list[int]
    methods: dict[str, MethodResult]

    @property
    def svm_to_ours_cost(self) -> float | None:
        """How many times ours's per-subscriber cost the SVM's is."""
        svm, ours = self.methods.get("svm"), self.methods.get("ours")
        if svm is None or ours is None or not ours.rank_seconds or not svm.rank_seconds:
            return None
        return svm.ms_per_subscriber_day / ours.ms_per_subscriber_day

    def metrics(self) -> dict[str, tuple[list[list[float | None]], list[list[float | None]]]]:
        """Every score the replay produced, without timings: what must not change between equal runs."""
        return {name: (m.ndcg, m.precision) for name, m in self.methods.items()}

    def table(self) -> str:
        header = ("method", "nDCG@10 day 1", "nDCG@10 later", "P@5 day 1", "P@5 later", "ms/subscriber/day")
        rows = [
            (
                m.name,
                _cell(m.ndcg_first),
                _cell(m.ndcg_later),
                _cell(m.precision_first),
                _cell(m.precision_later),
                f"{m.ms_per_subscriber_day:.1f}",
            )
            for m in self.methods.values()
        ]
        out = [
            f"{self.papers} labelled papers in {self.days} days of {min(self.batch_sizes)}-"
            f"{max(self.batch_sizes)}; {len(self.subscribers)} simulated subscribers "
            f"({', '.join(self.subscribers)}); seed {self.seed}",
            *text_table([header, *rows], right_aligned=range(1, len(header))),
            "shared work per day (vectorizer fit, similarity): "
            + ", ".join(f"{m.name} {m.shared_ms_per_day:.0f} ms" for m in self.methods.values()),
        ]
        ratio = self.svm_to_ours_cost
        if ratio is not None:
            out.append(
                f"svm / ours cost per subscriber-day: {ratio:.3g} (ours costs {1 / ratio:.3g}x the svm's)"
            )
        return "\n".join(out)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def batches(count: int, days: int) -> list[range]:
    """`days` consecutive batches as equal as they can be, the larger ones first."""
    if days < 1 or days > count:
        raise ValueError(f"cannot split {count} papers into {days} days")
    size, extra = divmod(count, days)
    bounds = [0]
    for day in range(days):
        bounds.append(bounds[-1] + size + (day < extra))
    return [range(a, b) for a, b in pairwise(bounds)]


def replay(
    papers: Sequence[Paper],
    labels: Labels,
    methods: Sequence[Method],
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    topics: Sequence[str] | None = None,
) -> EvaluationResult:
    """Run every method over the same days; papers without a label line are dropped, duplicates merged."""
    chosen_topics = list(labels.topics) if topics is None else list(topics)
    unknown = [t for t in chosen_topics if t not in labels.topics]
    if unknown or not chosen_topics:
        raise ValueError(f"unknown topics {unknown}; labelled topics are {sorted(labels.topics)}")
    unique = {p.key: p for p in reversed(papers) if p.key in labels.relevant}
    by_key = [unique[key] for key in sorted(unique)]
    ordered = [by_key[i] for i in np.random.default_rng(seed).permutation(len(by_key))]
    texts = [p.text for p in ordered]
    spans = batches(len(ordered), days)
    results: dict[str, MethodResult] = {}
    for method in methods:
        result = MethodResult(method.name)
        subscribers = [
            Subscriber(index, topic, labels.topics[topic]) for index, topic in enumerate(chosen_topics)
        ]
        for number, span in enumerate(spans, start=1):
            day = Day(number, texts[: span.stop], span.start, span.stop)
            began = time.perf_counter()
            method.prepare(day)
            result.prepare_seconds += time.perf_counter() - began
            day_ndcg: list[float | None] = []
            day_precision: list[float | None] = []
            for subscriber in subscribers:
                began = time.perf_counter()
                order = method.rank(day, subscriber)
                result.rank_seconds += time.perf_counter() - began
                result.rankings += 1
                if len(order) < min(SHOWN, day.size) or len(set(order)) != len(order):
                    raise RuntimeError(f"{method.name} returned a short or repeating ranking on day {number}")
                relevant = {
                    position
                    for position, row in enumerate(span)
                    if subscriber.topic in labels.relevant[ordered[row].key]
                }
                day_ndcg.append(ndcg_at_k(order, relevant, SHOWN))
                day_precision.append(precision_at_k(order, relevant, PRECISION_AT))
                shown = [span.start + position for position in order[:SHOWN]]
                subscriber.observe(shown, {span.start + position for position in relevant})
            result.ndcg.append(day_ndcg)
            result.precision.append(day_precision)
        results[method.name] = result
    return EvaluationResult(
        papers=len(ordered),
        subscribers=chosen_topics,
        days=days,
        seed=seed,
        batch_sizes=[len(span) for span in spans],
        methods=results,
    )


def plot(result: EvaluationResult, path: Path) -> Path:
    """One line per method over the days: the curve shows how fast votes pay off, which a mean hides."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = list(range(1, result.days + 1))
    for method in result.methods.values():
        values = [np.nan if v is None else v for v in method.ndcg_by_day]
        axes.plot(days, values, marker="o", label=method.name)
    axes.set_xlabel("simulated day")
    axes.set_ylabel("mean nDCG@10")
    axes.set_xticks(days)
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    axes.set_title(f"nDCG@10 by day: {result.papers} papers, {len(result.subscribers)} simulated subscribers")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def main_evaluate(
    listings_dir: Path,
    labels_path: Path,
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    plot_path: Path | None = DEFAULT_PLOT_PATH,
    topics: Sequence[str] | None = None,
    echo: Callable[[str], None] = print,
    repeats: int = 1,
    results_path: Path | None = None,
) -> EvaluationResult:
    """The `digest evaluate` command: replay, print the table, draw the plot when a path is given, and
    save each method's metrics (averaged over the orderings) as JSON at `results_path` when one is given.

    With `repeats` > 1 the papers are reshuffled into days with seeds seed, seed+1, ...: one replay has
    only a dozen subscriber-days on day one, so a single ordering says little about day one alone.
    """
    labels = read_labels(labels_path)
    papers = read_papers(listings_dir)
    results = [
        replay(papers, labels, standard_methods(s), days=days, seed=s, topics=topics)
        for s in range(seed, seed + repeats)
    ]
    echo(results[0].table())
    if repeats > 1:
        echo("")
        echo(mean_table(results))
    if plot_path is not None:
        echo(f"plot: {plot(results[0], plot_path)}")
    if results_path is not None:
        echo(f"results: {save_evaluation(figures(results), results_path)}")
    return results[0]


def figures(results: Sequence[EvaluationResult], ran_at: datetime | None = None) -> EvaluationFigures:
    """What the admin page shows: each method's metrics averaged over the replays, as `mean_table` does
    (a metric a replay could not score, having nothing relevant, is left out of that metric's mean)."""
    if not results:
        raise ValueError("no evaluation results to summarise")
    methods: dict[str, dict[str, float | None]] = {}
    for name in results[0].methods:
        runs = [r.methods[name] for r in results]
        methods[name] = {key: _mean([getattr(m, key) for m in runs]) for key in EVALUATION_METRICS}
    first = results[0]
    return EvaluationFigures(
        ran_at=ran_at or datetime.now(UTC),
        orderings=len(results),
        seeds=[r.seed for r in results],
        papers=first.papers,
        days=first.days,
        subscribers=list(first.subscribers),
        methods=methods,
    )


def mean_table(results: Sequence[EvaluationResult]) -> str:
    """Each method's metrics averaged over replays with different orderings of the papers."""
    names = list(results[0].methods)
    header = ("method", "nDCG@10 day 1", "nDCG@10 later", "P@5 day 1", "P@5 later", "ms/subscriber/day")
    rows = [header]
    for name in names:
        runs = [r.methods[name] for r in results]
        rows.append(
            (
                name,
                f"{np.mean([m.ndcg_first for m in runs]):.3f}",
                f"{np.mean([m.ndcg_later for m in runs]):.3f}",
                f"{np.mean([m.precision_first for m in runs]):.3f}",
                f"{np.mean([m.precision_later for m in runs]):.3f}",
                f"{np.mean([m.ms_per_subscriber_day for m in runs]):.1f}",
            )
        )
    lines = [
        f"mean over {len(results)} orderings of the papers (seeds {results[0].seed}..{results[-1].seed})",
        *text_table(rows, right_aligned=range(1, len(header))),
    ]
    return "\n".join(lines)


__all__ = [
    "DEFAULT_LABELS",
    "DEFAULT_PLOT_PATH",
    "Day",
    "EvaluationResult",
    "Labels",
    "Method",
    "MethodResult",
    "Paper",
    "Subscriber",
    "figures",
    "main_evaluate",
    "ndcg_at_k",
    "precision_at_k",
    "read_labels",
    "read_papers",
    "replay",
    "standard_methods",
]
