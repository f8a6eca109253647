"""`digest evaluate`: replay the judged listings as a run of days and score each ranking method the way a
reader meets it, in the email.

The papers are shuffled into daily batches. Each day every method shows its top ten of that day's batch to
one simulated reader per judged persona; the judgments play the reader, who votes "more" on every shown
paper judged squarely on topic (grade 2) and "less" on every shown paper judged off topic (grade 0), and
the votes carry into the following days. What a reader can vote on depends on what the method chose to
show, so each method keeps its own readers.

"ours" is the product itself (`tools.evaluation_product`): the batch is ingested, `digest run`'s own
`run_day` ranks, renders and sends, the emails are read back from the outbox and the votes go through the
same functions as a click on the email's links. The other methods are reference points, computed here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from digest.evaluation_figures import EVALUATION_METRICS, EvaluationFigures, save_evaluation
from digest.ingest.formats import ParsedListing, SourceLine, normalize_title, parse_listing_text
from digest.tables import text_table

SHOWN = 10
PRECISION_AT = 5
DEFAULT_DAYS = 8
DEFAULT_SEED = 7
DEFAULT_PLOT_PATH = Path("var") / "evaluation.png"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_OWN_LABELS = PACKAGE_DIR / "evaluation_labels.tsv"
DEFAULT_RELEVANCE = PACKAGE_DIR.parents[1] / "shared" / "relevance"
# The judged protocol's grades: 2 squarely on the interest, 1 related, 0 (unlisted) off topic.
ON_TOPIC = 2
# The textbook Rocchio weights, fixed here so that retuning `digest.rank.features` does not move the baseline.
ROCCHIO_LIKED = 0.75
ROCCHIO_DISLIKED = 0.25


# Metrics -----------------------------------------------------------------------------------------------


def ndcg_at_k(shown: Sequence[int], grades: Mapping[int, int], k: int = SHOWN) -> float | None:
    """Graded nDCG with gain 2^grade - 1 over what was shown; places not filled earn nothing.

    The ideal is the best k of what could have been shown. None when nothing could earn a gain, so a day
    without a relevant paper is left out of the averages rather than counted as perfect or failed.
    """
    ideal_grades = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal_grades:
        return None
    ideal = sum((2**g - 1) / math.log2(place + 2) for place, g in enumerate(ideal_grades))
    gained = sum(
        (2 ** grades.get(item, 0) - 1) / math.log2(place + 2) for place, item in enumerate(shown[:k])
    )
    return float(gained / ideal)


def precision_at_k(shown: Sequence[int], grades: Mapping[int, int], k: int = PRECISION_AT) -> float | None:
    """Share of the first k places holding a relevant paper (grade >= 1); an empty place counts as a miss."""
    if not any(g > 0 for g in grades.values()):
        return None
    return sum(1 for item in shown[:k] if grades.get(item, 0) > 0) / k


# Data --------------------------------------------------------------------------------------------------

_NOT_KEY = re.compile(r"[^a-z0-9]+")


def title_key(title: str) -> str:
    """The judgments' key: lower case, every run of other characters than a-z0-9 one space, ends stripped."""
    return _NOT_KEY.sub(" ", title.lower()).strip()


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    abstract: str


@dataclass(frozen=True)
class LabelSet:
    """One set of judgments: persona id → the keywords they subscribe with, and their grades by title key."""

    name: str
    keywords: dict[str, str]
    grades: dict[str, dict[str, int]]

    def only(self, personas: Sequence[str] | None) -> LabelSet:
        if not personas:
            return self
        unknown = sorted(set(personas) - set(self.keywords))
        if unknown:
            raise ValueError(f"unknown personas {unknown} in {self.name}; known: {sorted(self.keywords)}")
        return LabelSet(
            self.name, {p: self.keywords[p] for p in personas}, {p: self.grades[p] for p in personas}
        )


def read_shared_judgments(directory: Path) -> LabelSet:
    """`personas.json` and `judgments.tsv` as described in that folder's README."""
    personas_path, judgments_path = directory / "personas.json", directory / "judgments.tsv"
    for path in (personas_path, judgments_path):
        if not path.is_file():
            raise FileNotFoundError(f"judgments not found: {path}")
    try:
        personas = json.loads(personas_path.read_text(encoding="utf-8"))
        keywords = {str(p["id"]): str(p["keywords"]) for p in personas}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{personas_path}: expected a list of {{id, keywords, ...}}: {exc}") from None
    grades: dict[str, dict[str, int]] = {persona: {} for persona in keywords}
    lines = judgments_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        persona, grade, key = [*line.split("\t"), "", ""][:3]
        if persona not in grades or grade not in {"0", "1", "2"} or not key:
            raise ValueError(f"{judgments_path}:{number}: expected '<persona>\\t<0|1|2>\\t<title key>'")
        grades[persona][key] = int(grade)
    return LabelSet("shared", keywords, grades)


def read_own_labels(path: Path, papers: Sequence[Paper]) -> LabelSet:
    """The project's own binary labels (keyed by a hash of each title), as grades: relevant = 2."""
    by_hash = {hashlib.sha256(normalize_title(p.title).encode()).hexdigest()[:16]: p.key for p in papers}
    keywords: dict[str, str] = {}
    relevant: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# topic "):
            topic, _, words = line.removeprefix("# topic ").partition("\t")
            keywords[topic.strip()] = words.strip()
        elif line.startswith("#") or not line.strip():
            continue
        else:
            hashed, tab, names = line.partition("\t")
            if not tab:
                raise ValueError(f"{path}:{number}: expected '<key><TAB><topics>', got {line!r}")
            relevant.extend((hashed, name) for name in names.strip().split(",") if name)
    grades: dict[str, dict[str, int]] = {topic: {} for topic in keywords}
    for hashed, topic in relevant:
        if topic not in grades:
            raise ValueError(f"{path}: label names undeclared topic {topic!r}")
        if hashed in by_hash:
            grades[topic][by_hash[hashed]] = ON_TOPIC
    return LabelSet("own", keywords, grades)


def read_papers(listings_dir: Path) -> list[Paper]:
    """Every distinct paper in the listing dumps (by title key), first spelling kept, parsed as ingested."""
    files = sorted(listings_dir.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no listing dumps (*.txt) in {listings_dir}")
    papers: dict[str, Paper] = {}
    for path in files:
        with path.open(encoding="utf-8") as fh:
            lines = (SourceLine(number, text.rstrip("\n")) for number, text in enumerate(fh, 1))
            for parsed in parse_listing_text(lines):
                if isinstance(parsed, ParsedListing):
                    key = title_key(parsed.title)
                    papers.setdefault(key, Paper(key, parsed.title, parsed.abstract))
    return list(papers.values())


# The replay --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """One simulated subscriber: a persona of one label set."""

    index: int
    label_set: str
    persona: str
    keywords: str

    @property
    def name(self) -> str:
        return f"{self.label_set}:{self.persona}"


@dataclass(frozen=True)
class Day:
    """Day `number` (1-based): `papers` are everything published so far, rows `start:stop` today's batch."""

    number: int
    date_offset: int
    papers: Sequence[Paper]
    start: int
    stop: int

    @property
    def batch(self) -> Sequence[Paper]:
        return self.papers[self.start : self.stop]


class Method(Protocol):
    """A ranking method as the replay drives it: it shows each reader up to `SHOWN` rows of today's batch
    (positions into `day.papers`, best first) and hears each vote the reader casts on what it showed."""

    name: str

    def start(self, readers: Sequence[Reader]) -> None: ...

    def show(self, day: Day, readers: Sequence[Reader]) -> dict[int, list[int]]: ...

    def vote(self, reader: Reader, row: int, more: bool) -> None: ...

    def finish(self) -> None: ...


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


# Results -----------------------------------------------------------------------------------------------


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def later_days(days: int) -> range:
    """The days that show what votes taught: the second half of the run (days 5-8 of 8)."""
    return range(days // 2 + 1, days + 1)


@dataclass
class Cell:
    """One reader on one day."""

    ndcg: float | None
    precision: float | None
    shown: int
    junk: int


@dataclass
class MethodResult:
    """One method's replay: `cells[day - 1][reader index]`."""

    name: str
    cells: list[list[Cell]] = field(default_factory=list)
    seconds: float = 0.0

    def select(self, readers: Sequence[Reader], days: Iterable[int]) -> list[Cell]:
        wanted = [r.index for r in readers]
        return [self.cells[d - 1][i] for d in days for i in wanted if d - 1 < len(self.cells)]

    @property
    def ms_per_reader_day(self) -> float:
        count = sum(len(day) for day in self.cells)
        return 1000 * self.seconds / count if count else 0.0


def summarise(cells: Sequence[Cell], first: Sequence[Cell]) -> dict[str, float | None]:
    """Mean metrics over `cells` (the later days) and `first` (day 1), in `EVALUATION_METRICS` terms."""
    shown = sum(c.shown for c in [*first, *cells])
    return {
        "ndcg_first": _mean(c.ndcg for c in first),
        "ndcg_later": _mean(c.ndcg for c in cells),
        "precision_first": _mean(c.precision for c in first),
        "precision_later": _mean(c.precision for c in cells),
        "papers_per_digest": _mean(float(c.shown) for c in [*first, *cells]),
        "junk_share": (sum(c.junk for c in [*first, *cells]) / shown) if shown else None,
    }


@dataclass
class EvaluationResult:
    papers: int
    readers: list[Reader]
    days: int
    seed: int
    batch_sizes: list[int]
    methods: dict[str, MethodResult]

    def label_sets(self) -> list[str]:
        return list(dict.fromkeys(r.label_set for r in self.readers))

    def readers_of(self, label_set: str) -> list[Reader]:
        return [r for r in self.readers if r.label_set == label_set]

    def summary(self, method: str, readers: Sequence[Reader]) -> dict[str, float | None]:
        result = self.methods[method]
        figures = summarise(result.select(readers, later_days(self.days)), result.select(readers, [1]))
        figures["ms_per_subscriber_day"] = result.ms_per_reader_day
        return figures

    def ndcg_by_day(self, method: str, readers: Sequence[Reader]) -> list[float | None]:
        return [
            _mean(c.ndcg for c in self.methods[method].select(readers, [d])) for d in range(1, self.days + 1)
        ]

    def metrics(self) -> dict[str, list[list[tuple[float | None, float | None, int]]]]:
        """Every score the replay produced, without timings: what must not change between equal runs."""
        return {
            name: [[(c.ndcg, c.precision, c.shown) for c in day] for day in m.cells]
            for name, m in self.methods.items()
        }


def batches(count: int, days: int) -> list[range]:
    """`days` consecutive batches as equal as they can be, the larger ones first."""
    if days < 1 or days > count:
        raise ValueError(f"cannot split {count} papers into {days} days")
    size, extra = divmod(count, days)
    bounds = [0]
    for day in range(days):
        bounds.append(bounds[-1] + size + (day < extra))
    return [range(a, b) for a, b in pairwise(bounds)]


def make_readers(label_sets: Sequence[LabelSet]) -> list[Reader]:
    readers: list[Reader] = []
    for labels in label_sets:
        for persona, keywords in labels.keywords.items():
            readers.append(Reader(len(readers), labels.name, persona, keywords))
    return readers


def replay(
    papers: Sequence[Paper],
    label_sets: Sequence[LabelSet],
    methods: Sequence[Method],
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
) -> EvaluationResult:
    """Run every method over the same days (the papers shuffled with `seed`, then cut into `days`)."""
    by_key = sorted({p.key: p for p in papers}.values(), key=lambda p: p.key)
    ordered = [by_key[i] for i in np.random.default_rng(seed).permutation(len(by_key))]
    spans = batches(len(ordered), days)
    readers = make_readers(label_sets)
    grades_of = {labels.name: labels.grades for labels in label_sets}
    row_grades = [
        {row: g for row, p in enumerate(ordered) if (g := grades_of[r.label_set][r.persona].get(p.key, 0))}
        for r in readers
    ]
    results: dict[str, MethodResult] = {}
    for method in methods:
        result = MethodResult(method.name)
        began = time.perf_counter()
        method.start(readers)
        try:
            for number, span in enumerate(spans, start=1):
                day = Day(number, number - 1, ordered[: span.stop], span.start, span.stop)
                shown_by_reader = method.show(day, readers)
                cells: list[Cell] = []
                for reader in readers:
                    shown = shown_by_reader.get(reader.index, [])
                    if len(set(shown)) != len(shown) or any(
                        not span.start <= row < span.stop for row in shown
                    ):
                        raise RuntimeError(
                            f"{method.name} showed repeated or out-of-batch papers on day {number}"
                        )
                    today = {
                        row: g for row, g in row_grades[reader.index].items() if span.start <= row < span.stop
                    }
                    cells.append(
                        Cell(
                            ndcg=ndcg_at_k(shown, today, SHOWN),
                            precision=precision_at_k(shown, today, PRECISION_AT),
                            shown=len(shown[:SHOWN]),
                            junk=sum(1 for row in shown[:SHOWN] if row not in today),
                        )
                    )
                    for row in shown[:SHOWN]:
                        grade = today.get(row, 0)
                        if grade == ON_TOPIC or grade == 0:
                            method.vote(reader, row, grade == ON_TOPIC)
                result.cells.append(cells)
        finally:
            method.finish()
        result.seconds = time.perf_counter() - began
        results[method.name] = result
    return EvaluationResult(
        papers=len(ordered),
        readers=readers,
        days=days,
        seed=seed,
        batch_sizes=[len(span) for span in spans],
        methods=results,
    )


# Reporting ---------------------------------------------------------------------------------------------


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_summary(
    results: Sequence[EvaluationResult], method: str, readers_of: Callable[[EvaluationResult], list[Reader]]
) -> dict[str, float | None]:
    runs = [r.summary(method, readers_of(r)) for r in results]
    return {key: _mean(run[key] for run in runs) for key in runs[0]}


def method_table(results: Sequence[EvaluationResult], label_set: str) -> list[str]:
    first = results[0]
    later = later_days(first.days)
    header = (
        "method",
        "nDCG@10 day 1",
        f"nDCG@10 days {later.start}-{later.stop - 1}",
        "P@5 day 1",
        f"P@5 days {later.start}-{later.stop - 1}",
        "papers/digest",
        "judged 0",
        "ms/reader-day",
    )
    rows = [header]
    for name in first.methods:
        s = _mean_summary(results, name, lambda r: r.readers_of(label_set))
        rows.append(
            (
                name,
                _cell(s["ndcg_first"]),
                _cell(s["ndcg_later"]),
                _cell(s["precision_first"]),
                _cell(s["precision_later"]),
                _cell(s["papers_per_digest"], 1),
                _cell(None if s["junk_share"] is None else 100 * s["junk_share"], 0) + "%",
                _cell(s["ms_per_subscriber_day"], 1),
            )
        )
    personas = [r.persona for r in first.readers_of(label_set)]
    return [
        f"{label_set} judgments: {len(personas)} personas ({', '.join(personas)}), {first.papers} papers "
        f"in {first.days} days of {min(first.batch_sizes)}-{max(first.batch_sizes)}, "
        f"mean over {len(results)} ordering(s) (seeds {results[0].seed}..{results[-1].seed})",
        *text_table(rows, right_aligned=range(1, len(header))),
    ]


def persona_table(results: Sequence[EvaluationResult], label_set: str, compare: Sequence[str]) -> list[str]:
    """Ours per persona beside the reference methods, so a weak persona is visible."""
    first = results[0]
    later = later_days(first.days)
    span = f"{later.start}-{later.stop - 1}"
    present = [m for m in compare if m in first.methods and m != "ours"]
    header = ["persona", "ours day 1", f"ours days {span}"]
    for name in present:
        header += [f"{name} day 1", f"{name} days {span}"]
    header += ["papers/digest", "judged 0"]
    rows = [tuple(header)]
    for reader in first.readers_of(label_set):

        def pick(result: EvaluationResult, r: Reader = reader) -> list[Reader]:
            return [x for x in result.readers if x.name == r.name]

        ours = _mean_summary(results, "ours", pick)
        row = [reader.persona, _cell(ours["ndcg_first"]), _cell(ours["ndcg_later"])]
        for name in present:
            theirs = _mean_summary(results, name, pick)
            row += [_cell(theirs["ndcg_first"]), _cell(theirs["ndcg_later"])]
        junk = ours["junk_share"]
        row += [_cell(ours["papers_per_digest"], 1), _cell(None if junk is None else 100 * junk, 0) + "%"]
        rows.append(tuple(row))
    return [
        f"{label_set} judgments per persona, nDCG@10 (ours: papers per digest, share judged 0)",
        *text_table(rows, right_aligned=range(1, len(header))),
    ]


def plot(results: Sequence[EvaluationResult], label_set: str, path: Path) -> Path:
    """One line per method over the days: the curve shows how fast votes pay off, which a mean hides."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = results[0]
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = list(range(1, first.days + 1))
    for name in first.methods:
        curves = [r.ndcg_by_day(name, r.readers_of(label_set)) for r in results]
        values = [np.nan if (v := _mean(c[d - 1] for c in curves)) is None else v for d in days]
        axes.plot(days, values, marker="o", label=name)
    axes.set_xlabel("simulated day")
    axes.set_ylabel("mean nDCG@10")
    axes.set_xticks(days)
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(
        f"nDCG@10 by day, {label_set} judgments: {len(first.readers_of(label_set))} personas, "
        f"{first.papers} papers, {len(results)} ordering(s)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def figures(
    results: Sequence[EvaluationResult], label_set: str, ran_at: datetime | None = None
) -> EvaluationFigures:
    """What the admin page shows: each method's metrics on one label set, averaged over the orderings."""
    if not results:
        raise ValueError("no evaluation results to summarise")
    first = results[0]
    methods = {
        name: {
            key: value
            for key, value in _mean_summary(results, name, lambda r: r.readers_of(label_set)).items()
            if key in EVALUATION_METRICS
        }
        for name in first.methods
    }
    return EvaluationFigures(
        ran_at=ran_at or datetime.now(UTC),
        orderings=len(results),
        seeds=[r.seed for r in results],
        papers=first.papers,
        days=first.days,
        subscribers=[r.persona for r in first.readers_of(label_set)],
        methods=methods,
    )


def report(results: Sequence[EvaluationResult]) -> list[str]:
    lines: list[str] = []
    for label_set in results[0].label_sets():
        lines += [*method_table(results, label_set), ""]
    for label_set in results[0].label_sets():
        lines += [*persona_table(results, label_set, ["keywords", "svm"]), ""]
    return lines


def main_evaluate(
    listings_dir: Path,
    relevance_dir: Path | None = DEFAULT_RELEVANCE,
    own_labels: Path | None = DEFAULT_OWN_LABELS,
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    repeats: int = 1,
    personas: Sequence[str] | None = None,
    methods: Callable[[int], list[Method]] = standard_methods,
    plot_path: Path | None = DEFAULT_PLOT_PATH,
    results_path: Path | None = None,
    echo: Callable[[str], None] = print,
) -> list[EvaluationResult]:
    """The `digest evaluate` command: replay `repeats` orderings, print the tables, draw the plot and save
    the figures of the first label set (the shared judgments when given) for the admin page."""
    papers = read_papers(listings_dir)
    label_sets: list[LabelSet] = []
    if relevance_dir is not None:
        label_sets.append(read_shared_judgments(relevance_dir).only(personas))
    if own_labels is not None:
        label_sets.append(read_own_labels(own_labels, papers).only(None if label_sets else personas))
    if not label_sets:
        raise ValueError("no judgments to evaluate with")
    results = [
        replay(papers, label_sets, methods(s), days=days, seed=s) for s in range(seed, seed + max(1, repeats))
    ]
    for line in report(results):
        echo(line)
    main_set = label_sets[0].name
    if plot_path is not None:
        echo(f"plot ({main_set} judgments): {plot(results, main_set, plot_path)}")
    if results_path is not None:
        echo(f"results: {save_evaluation(figures(results, main_set), results_path)}")
    return results
