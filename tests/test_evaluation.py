"""The offline replay: its metrics, the simulated subscriber's votes, and a short run on the real listings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from digest.evaluation import (
    DEFAULT_LABELS,
    Day,
    EvaluationResult,
    Labels,
    Paper,
    Subscriber,
    batches,
    main_evaluate,
    ndcg_at_k,
    precision_at_k,
    replay,
)

SHARED_LISTINGS = Path(__file__).resolve().parents[2] / "shared" / "listings"
FEW_TOPICS = ["lora", "moe", "nas"]


# Metrics -----------------------------------------------------------------------------------------------


def test_ndcg_is_one_for_a_perfect_ranking() -> None:
    assert ndcg_at_k(["a", "b", "x", "y"], {"a", "b"}, k=10) == pytest.approx(1.0)
    # More relevant papers than places: the ideal fills all k places.
    assert ndcg_at_k(list("abcdef"), set("abcdefgh"), k=3) == pytest.approx(1.0)


def test_ndcg_of_a_known_permutation() -> None:
    # Relevant at ranks 2 and 3 of two relevant: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3).
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b", "y"], {"a", "b"}, k=10) == pytest.approx(expected)
    # A relevant paper below the cut earns nothing, but still counts in the ideal.
    assert ndcg_at_k(["x", "y", "a"], {"a", "b"}, k=2) == 0.0
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_precision_at_k() -> None:
    assert precision_at_k(["a", "x", "b", "y", "c", "d"], {"a", "b", "c", "d"}, k=5) == pytest.approx(0.6)
    assert precision_at_k(["a"], {"a"}, k=5) == pytest.approx(0.2)


def test_nothing_relevant_is_left_out_not_scored() -> None:
    assert ndcg_at_k(["a", "b"], set(), k=10) is None
    assert precision_at_k(["a", "b"], set(), k=5) is None


def test_batches_cover_every_paper_once() -> None:
    spans = batches(10, 3)
    assert [len(s) for s in spans] == [4, 3, 3]
    assert [i for s in spans for i in s] == list(range(10))
    with pytest.raises(ValueError):
        batches(2, 3)


# The simulated subscriber --------------------------------------------------------------------------------


class _Recorder:
    """Ranks by title (so what is shown is known) and keeps what it was given each day."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, list[str], list[int], list[int]]] = []
        self.titles: list[str] = []

    def prepare(self, day: Day) -> None:
        self.titles = [text.split(".")[0] for text in day.texts]

    def rank(self, day: Day, subscriber: Subscriber) -> list[int]:
        self.seen.append(
            (
                day.number,
                len(day.texts),
                self.titles[day.start : day.stop],
                [*subscriber.more],
                [*subscriber.less],
            )
        )
        todays = self.titles[day.start : day.stop]
        return sorted(range(day.size), key=lambda position: todays[position])


def _tiny_corpus() -> tuple[list[Paper], Labels]:
    # 24 papers, 12 a day over two days; "cats" papers are relevant. Titles sort as a00 < a01 < ...
    papers = [Paper(f"{i:016x}", f"a{i:02d}", f"abstract number {i}") for i in range(24)]
    relevant = {p.key: frozenset({"cats"} if i % 3 == 0 else ()) for i, p in enumerate(papers)}
    return papers, Labels({"cats": "cats"}, relevant)


def test_votes_follow_the_labels_of_what_was_shown_and_accumulate() -> None:
    papers, labels = _tiny_corpus()
    recorder = _Recorder()
    replay(papers, labels, [recorder], days=2, seed=1)
    (day1, corpus1, titles1, more1, less1), (day2, corpus2, titles2, more2, less2) = recorder.seen
    assert (day1, day2) == (1, 2)
    assert (corpus1, corpus2) == (12, 24)  # the corpus grows to every paper published so far
    assert more1 == less1 == []
    cats = {f"a{i:02d}" for i in range(0, 24, 3)}
    shown1 = sorted(titles1)[:10]  # the recorder's top ten: two of the twelve were never shown
    voted1 = [titles1[row] for row in more2] + [titles1[row] for row in less2]
    assert sorted(voted1) == shown1
    assert {titles1[row] for row in more2} == {t for t in shown1 if t in cats}
    assert {titles1[row] for row in less2} == {t for t in shown1 if t not in cats}
    assert set(titles1).isdisjoint(titles2)


def test_subscriber_observe_keeps_earlier_votes() -> None:
    subscriber = Subscriber(0, "cats", "cats", more=[1], less=[2])
    subscriber.observe([5, 6, 7], {6})
    assert subscriber.more == [1, 6]
    assert subscriber.less == [2, 5, 7]


def test_unknown_topic_is_refused() -> None:
    papers, labels = _tiny_corpus()
    with pytest.raises(ValueError, match="unknown topics"):
        replay(papers, labels, [_Recorder()], days=2, topics=["dogs"])


# A short run on the real listings -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResult, EvaluationResult, Path]:
    if not sorted(SHARED_LISTINGS.glob("*.txt")):
        pytest.fail(f"the shared listing dumps are missing from {SHARED_LISTINGS}")
    plot_path = tmp_path_factory.mktemp("evaluation") / "plot" / "evaluation.png"
    lines: list[str] = []
    first = main_evaluate(
        SHARED_LISTINGS, DEFAULT_LABELS, days=3, topics=FEW_TOPICS, plot_path=plot_path, echo=lines.append
    )
    second = main_evaluate(
        SHARED_LISTINGS, DEFAULT_LABELS, days=3, topics=FEW_TOPICS, plot_path=None, echo=lambda _: None
    )
    assert any("nDCG@10 day 1" in line for line in lines)
    return first, second, plot_path


def test_every_method_scores_within_bounds(
    short_runs: tuple[EvaluationResult, EvaluationResult, Path],
) -> None:
    result, _, _ = short_runs
    assert set(result.methods) == {"random", "keywords", "rocchio", "svm", "ours"}
    assert result.subscribers == FEW_TOPICS
    assert len(result.batch_sizes) == 3 and sum(result.batch_sizes) == result.papers
    for method in result.methods.values():
        summary = [method.ndcg_first, method.ndcg_later, method.precision_first, method.precision_later]
        assert all(value is not None and 0.0 <= value <= 1.0 for value in summary), method.name
        assert method.rankings == 3 * len(FEW_TOPICS)
        assert method.ms_per_subscriber_day >= 0.0
    # Sanity of the replay itself: any keyword method beats shuffling by a wide margin.
    keywords, shuffled = result.methods["keywords"].ndcg_later, result.methods["random"].ndcg_later
    assert keywords is not None and shuffled is not None and keywords > shuffled + 0.3
    assert result.svm_to_ours_cost is not None
    table = result.table()
    for name in result.methods:
        assert name in table


def test_plot_is_a_png(short_runs: tuple[EvaluationResult, EvaluationResult, Path]) -> None:
    _, _, plot_path = short_runs
    assert plot_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_runs_are_deterministic(short_runs: tuple[EvaluationResult, EvaluationResult, Path]) -> None:
    first, second, _ = short_runs
    assert first.metrics() == second.metrics()
