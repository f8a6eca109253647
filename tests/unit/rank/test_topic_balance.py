"""Every typed topic is heard: a topic outscored by the reader's others still gets a place, a topic with
nothing good is named as quiet, and a one-topic reader's digest is what it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from digest.ingest.files import ingest_paths
from digest.rank.choose import Topics, balance_topics
from digest.rank.ranker import Candidate, Ranker, Ranking
from digest.services import Services

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

# Many papers on two related topics, a few on a third: summed, the first two fill any short digest.
LORA = [
    f"LoRA variant {n}: low-rank adaptation for parameter-efficient fine-tuning of language models"
    for n in range(12)
]
DIFFUSION = [f"Diffusion sampler {n} for image synthesis with fewer denoising steps" for n in range(3)]
OTHER = [f"Graph neural network benchmark {n} on molecule property prediction" for n in range(5)]


def ranking(services: Services, tmp_path: Path, readers: list[list[str]], *, balance: bool = True) -> Ranking:
    path = tmp_path / "papers.jsonl"
    if not path.exists():
        path.write_text(
            "".join(
                json.dumps({"title": title, "abstract": f"{title}. We report experiments."}) + "\n"
                for title in LORA + DIFFUSION + OTHER
            ),
            encoding="utf-8",
        )
        ingest_paths(services.sessions, [path], now=T0 - timedelta(hours=1))
    block = [
        Candidate(digest_id=n + 1, subscriber_id=n + 1, topics=topics, size=5, since=T0 - timedelta(days=1))
        for n, topics in enumerate(readers)
    ]
    with services.sessions() as session:
        ranker = Ranker(services, session, T0 - timedelta(days=1), T0, balance_topics=balance)
        return ranker.rank(session, block)


def titles(services: Services, picks: list[tuple[int, float, str, str]]) -> list[str]:
    from digest.models import Listing

    with services.sessions() as session:
        return [
            session.get_one(Listing, listing_id).title
            for listing_id, _, _, section in picks
            if section == "picks"
        ]


def test_a_third_topic_that_scores_lower_still_gets_a_paper(services: Services, tmp_path: Path) -> None:
    reader = ["LoRA", "parameter-efficient fine-tuning", "diffusion"]
    before = titles(services, ranking(services, tmp_path, [reader], balance=False)[1])
    assert before and not any(t in DIFFUSION for t in before), "the case this fixes: diffusion is crowded out"
    result = ranking(services, tmp_path, [reader])
    after = titles(services, result[1])
    assert len(after) == 5
    assert sum(t in DIFFUSION for t in after) == 1, after
    assert sum(t in LORA for t in after) == 4, "the other places stay with the strongest papers"
    assert after[:4] == before[:4], "only the last place is given up"
    assert result.quiet == {}


def test_a_topic_with_no_matching_paper_is_reported_quiet(services: Services, tmp_path: Path) -> None:
    result = ranking(services, tmp_path, [["LoRA", "zymurgy", "Zymurgy "], ["zymurgy"], ["diffusion"]])
    assert result.quiet[1] == ["zymurgy"], "named once, as first typed"
    assert 2 not in result, "no paper at all: nothing to send"
    assert result.quiet[2] == ["zymurgy"]
    assert 3 not in result.quiet
    assert all(t in LORA for t in titles(services, result[1]))


def test_single_topic_readers_are_unchanged(services: Services, tmp_path: Path) -> None:
    readers = [["LoRA"], ["diffusion"], ["graph neural networks"], ["parameter-efficient fine-tuning"]]
    balanced = ranking(services, tmp_path, readers)
    plain = ranking(services, tmp_path, readers, balance=False)
    assert dict(balanced) == dict(plain) and len(balanced) == 4
    assert balanced.quiet == {}


def test_related_topics_that_share_the_picks_need_no_extra_place(services: Services, tmp_path: Path) -> None:
    readers = [["LoRA", "parameter-efficient fine-tuning"], ["diffusion", "image synthesis"]]
    assert dict(ranking(services, tmp_path, readers)) == dict(
        ranking(services, tmp_path, readers, balance=False)
    )


def test_a_place_is_not_taken_from_a_paper_another_topic_relies_on() -> None:
    # Topics A, B, C; papers 0-2 on A, 3 on B alone, 4 on C alone (the lowest overall).
    on_topic = np.array([[0.9, 0, 0], [0.8, 0, 0], [0.7, 0, 0], [0, 0.5, 0], [0, 0, 0.4]], dtype=np.float32)
    block = (on_topic.sum(axis=1) / np.sqrt(3))[:, None].astype(np.float32)
    chosen = [[(doc, float(block[doc, 0])) for doc in range(4)]]
    topics = Topics(on_topic, np.full(3, 0.01, dtype=np.float32), np.array([[0, 1, 2]]))
    everything = np.ones((5, 1), bool)
    result = balance_topics(chosen, block, everything, topics, np.array([4]), threshold=0.0)
    assert [doc for doc, _ in result.chosen[0]] == [0, 1, 4, 3], "B's only paper stays; A's weakest goes"
    assert result.chosen[0][2] == (4, float(block[4, 0])), "scored as the subscriber's own score"
    assert not result.quiet.any()

    roomy = balance_topics(chosen, block, everything, topics, np.array([5]), threshold=0.0)
    assert [doc for doc, _ in roomy.chosen[0]] == [0, 1, 2, 3, 4], (
        "a free place is used before any is given up"
    )

    sent_before = everything.copy()
    sent_before[4] = False
    unheard = balance_topics(chosen, block, sent_before, topics, np.array([4]), threshold=0.0)
    assert unheard.chosen[0] == chosen[0], "C's only paper was sent before: nothing to give it"
    assert unheard.quiet.tolist() == [[False, False, True]]

    high_floor = Topics(on_topic, np.array([0.01, 0.01, 0.45], dtype=np.float32), topics.columns)
    noise = balance_topics(chosen, block, everything, high_floor, np.array([4]), threshold=0.0)
    assert noise.chosen[0] == chosen[0], "a match most stored papers reach is not news"
    assert noise.quiet.tolist() == [[False, False, True]]
