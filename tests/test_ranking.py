from __future__ import annotations

import numpy as np

from digest.models import Vote
from digest.ranking import Corpus, top_k

PAPERS = {
    1: "Low-rank adapters for parameter-efficient fine-tuning of language models. LoRA freezes weights.",
    2: "Quantized low-rank adaptation: fine-tuning big language models on one GPU with LoRA.",
    3: "Denoising diffusion models for image generation with classifier-free guidance.",
    4: "Latent diffusion for high-resolution image synthesis and image generation.",
    5: "Graph neural networks for molecule property prediction with message passing.",
    6: "Message passing graph networks on point clouds for 3D shape classification.",
    7: "Reinforcement learning from human feedback aligns chat assistants.",
}


def corpus() -> Corpus:
    return Corpus.fit(list(PAPERS), PAPERS.values())


def test_keywords_alone_rank_the_matching_papers_first() -> None:
    c = corpus()
    profile = c.profile(["LoRA", "parameter-efficient fine-tuning"], {})
    scores = c.scores(np.arange(len(PAPERS)), [profile])[:, 0]
    ranked = [int(c.listing_ids[i]) for i, _ in top_k(scores, np.ones(len(PAPERS), bool), 3)]
    assert ranked[:2] in ([1, 2], [2, 1])
    assert 7 not in ranked


def test_unknown_keywords_give_an_empty_profile_and_no_picks() -> None:
    c = corpus()
    profile = c.profile(["zymurgy"], {})
    assert profile.is_empty
    scores = c.scores(np.arange(len(PAPERS)), [profile])[:, 0]
    assert top_k(scores, np.ones(len(PAPERS), bool), 5) == []


def test_a_liked_papers_terms_rise_and_a_disliked_papers_terms_fall() -> None:
    c = corpus()
    base = c.profile(["diffusion models"], {})
    moved = c.profile(["diffusion models"], {5: Vote.MORE, 4: Vote.LESS})
    rows = np.arange(len(PAPERS))
    before = c.scores(rows, [base])[:, 0]
    after = c.scores(rows, [moved])[:, 0]
    row = {int(listing_id): i for i, listing_id in enumerate(c.listing_ids)}
    assert after[row[6]] > before[row[6]], "a paper like the liked one should score higher"
    assert after[row[4]] < before[row[4]], "the disliked paper should score lower"
    vocabulary = c.vectorizer.vocabulary_
    assert moved.vector[0, vocabulary["graph"]] > base.vector[0, vocabulary["graph"]]
    assert moved.vector[0, vocabulary["latent"]] < base.vector[0, vocabulary["latent"]]


def test_reason_names_the_subscribers_terms_without_repeating_itself() -> None:
    c = corpus()
    profile = c.profile(["image generation"], {})
    row = int(np.flatnonzero(c.listing_ids == 4)[0])
    reason = c.reason(row, profile)
    assert reason.startswith("Matches your topics: image generation")
    assert ", image" not in reason and ", generation" not in reason

    learned = c.profile(["image generation"], {5: Vote.MORE})
    graph_row = int(np.flatnonzero(c.listing_ids == 6)[0])
    assert c.reason(graph_row, learned).startswith("Like papers you asked for more of: message passing")


def test_top_k_respects_the_mask_order_and_zero_threshold() -> None:
    scores = np.array([0.2, 0.9, 0.0, 0.5, -0.1, 0.7], dtype=np.float32)
    allowed = np.array([True, True, True, True, True, False])
    assert top_k(scores, allowed, 10) == [(1, scores[1]), (3, scores[3]), (0, scores[0])]
    assert [i for i, _ in top_k(scores, allowed, 2)] == [1, 3]
    assert top_k(scores, np.zeros(6, bool), 3) == []
