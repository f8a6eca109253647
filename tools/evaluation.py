"""`digest evaluate`: replay the judged listings as a run of days and score each ranking method the way a
reader meets it, in the email.

The papers are shuffled into daily batches. Each day every method shows its top ten of that day's batch to
one simulated reader per judged persona; the judgments play the reader, who votes "more" on every shown
paper judged squarely on topic (grade 2) and "less" on every shown paper judged off topic (grade 0), and
the votes carry into the following days. What a reader can vote on depends on what the method chose to
show, so each method keeps its own readers.

"ours" is the product itself (`tools.evaluation_product`): the batch is ingested, `digest run`'s own
`run_day` ranks, renders and sends, the emails are read back from the outbox and the votes go through the
same functions as a click on the email's links. The reference methods are in `tools/evaluation_methods.py`,
the tables and the plot in `tools/evaluation_report.py`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np

from digest.ingest.formats import ParsedListing, SourceLine, normalize_title, parse_listing_text

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
