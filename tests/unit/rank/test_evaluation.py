"""The evaluation: its graded metrics, the judgments it reads, the replay's reader, and the product measured
through `digest run` itself."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from digest.cli import main
from digest.models import Digest, DigestItem, Listing, Subscriber, utcnow
from tests.support.env import SHARED
from tools.evaluation import (
    DEFAULT_OWN_LABELS,
    Day,
    LabelSet,
    Paper,
    Reader,
    batches,
    ndcg_at_k,
    precision_at_k,
    read_own_labels,
    read_papers,
    read_shared_judgments,
    replay,
    title_key,
)
from tools.evaluation_methods import reference_methods
from tools.evaluation_product import ProductMethod, read_digest_text, reader_address
from tools.evaluation_report import main_evaluate

# Metrics -----------------------------------------------------------------------------------------------


def test_graded_ndcg_uses_exponential_gain_and_the_best_possible_ten() -> None:
    grades = {1: 2, 2: 1, 3: 1}
    assert ndcg_at_k([1, 2, 3, 9], grades) == pytest.approx(1.0)
    # The grade-2 paper in second place: (1 + 3/log2 3 + 1/2) / (3 + 1/log2 3 + 1/2).
    expected = (1 + 3 / math.log2(3) + 0.5) / (3 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k([2, 1, 3], grades) == pytest.approx(expected)
    # Places left empty earn nothing: a short digest scores below a full one with the same head.
    assert ndcg_at_k([1], grades) == pytest.approx(3 / (3 + 1 / math.log2(3) + 0.5))


def test_precision_counts_empty_places_as_misses_and_grade_one_as_relevant() -> None:
    assert precision_at_k([1, 2, 7, 8, 9], {1: 2, 2: 1}) == pytest.approx(0.4)
    assert precision_at_k([1], {1: 2}) == pytest.approx(0.2)


def test_a_day_without_relevant_papers_is_left_out() -> None:
    assert ndcg_at_k([1, 2], {}) is None
    assert precision_at_k([1, 2], {}) is None


def test_batches_cover_every_paper_once() -> None:
    spans = batches(10, 3)
    assert [len(s) for s in spans] == [4, 3, 3]
    assert [i for s in spans for i in s] == list(range(10))
    with pytest.raises(ValueError):
        batches(2, 3)


def test_title_key_follows_the_judgments_readme() -> None:
    assert title_key("  LoRA: Low-Rank  Adaptation (v2)!") == "lora low rank adaptation v2"
    assert title_key("Déjà vu") == "d j vu"


# Judgments ---------------------------------------------------------------------------------------------


def _write_judgments(directory: Path, lines: Sequence[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    personas = [
        {"id": "cats", "keywords": "cats, kittens", "interest": "felines"},
        {"id": "dogs", "keywords": "dogs"},
    ]
    (directory / "personas.json").write_text(json.dumps(personas), encoding="utf-8")
    (directory / "judgments.tsv").write_text(
        "persona\tgrade\ttitle_key\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    return directory


def test_shared_judgments_are_read_with_their_grades(tmp_path: Path) -> None:
    labels = read_shared_judgments(_write_judgments(tmp_path / "j", ["cats\t2\ton cats", "dogs\t1\ton cats"]))
    assert labels.keywords == {"cats": "cats, kittens", "dogs": "dogs"}
    assert labels.grades == {"cats": {"on cats": 2}, "dogs": {"on cats": 1}}
    assert labels.only(["dogs"]).keywords == {"dogs": "dogs"}
    with pytest.raises(ValueError, match="unknown personas"):
        labels.only(["birds"])


def test_a_malformed_judgment_names_its_file_and_line(tmp_path: Path) -> None:
    directory = _write_judgments(tmp_path / "j", ["cats\t2\ton cats", "cats\tthree\ton dogs"])
    with pytest.raises(ValueError, match=r"judgments\.tsv:3"):
        read_shared_judgments(directory)
    with pytest.raises(FileNotFoundError, match=r"personas\.json"):
        read_shared_judgments(tmp_path / "missing")


def test_the_shared_judgments_cover_the_listing_papers() -> None:
    papers = read_papers(SHARED / "listings")
    labels = read_shared_judgments(SHARED / "relevance")
    keys = {p.key for p in papers}
    judged = {key for grades in labels.grades.values() for key in grades}
    assert len(labels.keywords) >= 9
    assert judged <= keys, sorted(judged - keys)[:5]
    own = read_own_labels(DEFAULT_OWN_LABELS, papers)
    assert len(own.keywords) == 12 and all(own.grades[t] for t in own.keywords)


# The replay's reader -----------------------------------------------------------------------------------


PAPERS = [Paper(f"p{n}", f"Paper {n}", "text") for n in range(8)]


class _Fixed:
    """Shows the first three papers of each batch and records what it showed and the votes it heard."""

    name = "fixed"

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.votes: list[tuple[str, str, bool]] = []
        self.papers: Sequence[Paper] = []

    def start(self, readers: Sequence[Reader]) -> None:
        pass

    def show(self, day: Day, readers: Sequence[Reader]) -> dict[int, list[int]]:
        self.papers = day.papers
        rows = list(range(day.start, min(day.start + 3, day.stop)))
        self.shown += [day.papers[row].key for row in rows]
        return {r.index: rows for r in readers}

    def vote(self, reader: Reader, row: int, more: bool) -> None:
        self.votes.append((reader.persona, self.papers[row].key, more))

    def finish(self) -> None:
        pass


def test_the_reader_votes_more_on_grade_two_less_on_grade_zero_and_not_on_grade_one() -> None:
    grades = {"p0": 2, "p1": 1, "p2": 2, "p5": 1}
    labels = LabelSet("t", {"cats": "cats"}, {"cats": grades})
    method = _Fixed()
    result = replay(PAPERS, [labels], [method], days=2, seed=1)
    expected = [("cats", key, grades.get(key, 0) == 2) for key in method.shown if grades.get(key, 0) != 1]
    assert len(method.shown) == 6 and method.votes == expected
    cells = result.methods["fixed"].cells
    assert [c.shown for day in cells for c in day] == [3, 3]
    assert sum(c.junk for day in cells for c in day) == sum(1 for key in method.shown if key not in grades)


def test_a_method_that_shows_papers_from_another_day_is_refused() -> None:
    class Cheater(_Fixed):
        def show(self, day: Day, readers: Sequence[Reader]) -> dict[int, list[int]]:
            self.papers = day.papers
            return {r.index: [0] for r in readers}  # day 1's first paper, again on day 2

    labels = LabelSet("t", {"cats": "cats"}, {"cats": {"p0": 2}})
    with pytest.raises(RuntimeError, match="out-of-batch"):
        replay(PAPERS, [labels], [Cheater()], days=2, seed=1)


def test_the_digest_text_part_is_read_item_by_item_and_trending_is_left_out() -> None:
    text = "\n".join(
        [
            "Your paper digest",
            "",
            "1. A paper: with a colon",
            "   https://example.org/a",
            "   More like this: http://x/feedback/m1",
            "   Less like this: http://x/feedback/l1",
            "",
            "2. Another",
            "   More like this: http://x/feedback/m2",
            "   Less like this: http://x/feedback/l2",
            "",
            "Trending today",
            "3. Popular",
            "   More like this: http://x/feedback/m3",
            "   Less like this: http://x/feedback/l3",
        ]
    )
    assert read_digest_text(text) == [
        ("A paper: with a colon", "http://x/feedback/m1", "http://x/feedback/l1"),
        ("Another", "http://x/feedback/m2", "http://x/feedback/l2"),
    ]


# The product, measured through `digest run` -----------------------------------------------------------


def _fixture_papers() -> list[Paper]:
    topics = {
        "cats": "feline behaviour of domestic cats and kittens",
        "dogs": "canine training of dogs and puppies",
        "birds": "avian migration of songbirds",
    }
    papers = []
    for n in range(24):
        subject, words = list(topics.items())[n % 3]
        title = f"Study {n} of {subject}"
        papers.append(
            Paper(title_key(title), title, f"We examine {words} in setting {n}, variant {n * 7 % 5}.")
        )
    return papers


def test_evaluation_and_digest_run_choose_the_same_papers_in_the_same_order(tmp_path: Path) -> None:
    """One stored state, copied: `digest run` on one copy, the evaluation's own step on the other."""
    papers = _fixture_papers()
    readers = [Reader(0, "t", "cats", "cats, kittens"), Reader(1, "t", "dogs", "dogs")]
    product = ProductMethod(first_day=utcnow() - timedelta(hours=3))
    product.start(readers)
    try:
        day = Day(1, 0, papers, 0, len(papers))
        product.ingest(day)
        assert product.root is not None
        copy = tmp_path / "copy"
        shutil.copytree(product.root, copy)
        shown = product.run(day)
    finally:
        product.finish()

    result = CliRunner().invoke(main, ["run"], env={"DIGEST_DATA_DIR": str(copy)})
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{copy / 'digest.sqlite3'}")
    with engine.connect() as connection:
        rows = connection.execute(
            select(Subscriber.email, Listing.title)
            .join(Digest, Digest.subscriber_id == Subscriber.id)
            .join(DigestItem, DigestItem.digest_id == Digest.id)
            .join(Listing, Listing.id == DigestItem.listing_id)
            .where(DigestItem.section == "picks")
            .order_by(Subscriber.email, DigestItem.rank)
        ).all()
    engine.dispose()
    by_cli: dict[str, list[str]] = {}
    for email, title in rows:
        by_cli.setdefault(email, []).append(title)
    by_evaluation = {reader_address(r): [papers[row].title for row in shown[r.index]] for r in readers}
    assert by_evaluation == by_cli
    cats = by_cli[reader_address(readers[0])]
    assert len(cats) == 10 and all(title.endswith("of cats") for title in cats[:8])


def test_a_short_replay_through_the_product(tmp_path: Path) -> None:
    lines: list[str] = []
    plot_path = tmp_path / "plot.png"
    results = main_evaluate(
        SHARED / "listings",
        SHARED / "relevance",
        None,
        days=2,
        personas=["peft", "moe"],
        plot_path=plot_path,
        echo=lines.append,
        methods=lambda seed: [*reference_methods(seed)[:2], ProductMethod()],
    )
    text = "\n".join(lines)
    assert "nDCG@10 day 1" in text and "peft" in text and "ours" in text
    assert plot_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = results[0]
    ours = result.summary("ours", result.readers)
    keywords = result.summary("keywords", result.readers)
    shuffled = result.summary("random", result.readers)
    for figures in (ours, keywords, shuffled):
        assert figures["ndcg_first"] is not None and 0.0 <= figures["ndcg_first"] <= 1.0
    # The replay itself is sound: keyword matching beats shuffling by a wide margin, and so does the product.
    assert keywords["ndcg_first"] is not None and shuffled["ndcg_first"] is not None
    assert keywords["ndcg_first"] > shuffled["ndcg_first"] + 0.3
    assert ours["ndcg_first"] is not None and ours["ndcg_first"] > shuffled["ndcg_first"] + 0.3
    assert ours["papers_per_digest"] is not None and ours["papers_per_digest"] > 0
