"""The profile maths and the feature space, on small invented corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from digest.rank.choose import choose, choose_block, scores
from digest.rank.explain import Explainer
from digest.rank.features import FeatureSpace, learn_acronyms, term_index, terms, words
from digest.rank.profile import KeywordProfiles, Votes, profile, train_learned

PAPERS = [
    "Low-Rank Adaptation (LoRA) for parameter-efficient fine-tuning of language models.",
    "Quantized low-rank adapters: fine-tuning big language models on one GPU with LoRA.",
    "Denoising diffusion models for image generation with classifier-free guidance.",
    "Latent diffusion for high-resolution image synthesis and image generation.",
    "Graph neural networks for molecule property prediction with message passing.",
    "Message passing graph networks on point clouds for 3D shape classification.",
    "Reinforcement learning from human feedback aligns chat assistants.",
    "Sparse Mixture-of-Experts (MoE) layers route tokens to a few experts.",
    "Scaling a mixture of experts language model with expert parallelism.",
    "Neural architecture search (NAS) finds convolutional cells automatically.",
]


def space_and_docs() -> tuple[FeatureSpace, sp.csr_matrix]:
    space = FeatureSpace.fit(PAPERS)
    return space, space.transform(PAPERS)


def ranked(space: FeatureSpace, docs: sp.csr_matrix, vector: sp.csr_matrix, k: int = 3) -> list[int]:
    column = scores(docs, vector)[:, 0]
    return [i for i, _ in choose(column, np.ones(len(column), bool), None, k, threshold=0.0001)]


def test_keywords_are_read_the_way_people_type_them() -> None:
    assert words("Graph Neural Networks") == words("graph neural network")
    assert "finetuning" in words("fine-tuning") and "fine" in words("fine-tuning")
    assert "graph neural" in terms("graph neural networks") and "neural network" in terms(
        "graph neural networks"
    )
    acronyms = learn_acronyms(PAPERS)
    assert acronyms["lora"] == "low-rank adaptation"
    assert acronyms["moe"] == "mixture-of-experts"
    assert acronyms["nas"] == "neural architecture search"


def test_an_acronym_finds_papers_that_spell_it_out_and_the_other_way_round() -> None:
    space, docs = space_and_docs()
    assert set(ranked(space, docs, space.keyword_vector(["MoE"]), 2)) == {7, 8}
    assert 9 in ranked(space, docs, space.keyword_vector(["NAS"]), 1)
    assert set(ranked(space, docs, space.keyword_vector(["low-rank adaptation"]), 2)) == {0, 1}


def test_a_liked_papers_terms_rise_and_a_disliked_papers_terms_fall() -> None:
    space, docs = space_and_docs()
    keyword = space.keyword_vector(["diffusion models"])
    moved = profile(keyword, Votes(docs[[4]], docs[[3]]), None)
    before, after = scores(docs, keyword)[:, 0], scores(docs, moved)[:, 0]
    assert after[5] > before[5], "a paper like the liked one scores higher"
    assert after[3] < before[3], "the disliked paper scores lower"
    graph, latent = term_index("graph"), term_index("latent")
    assert moved[0, graph] > keyword[0, graph]
    assert moved[0, latent] < keyword[0, latent]


def test_a_learned_model_ranks_the_liked_direction_first() -> None:
    space, docs = space_and_docs()
    votes = Votes(liked=docs[[4, 5]], disliked=docs[[2, 3]])
    learned = train_learned(votes, docs)
    assert learned is not None and learned.nnz > 0
    top = ranked(space, docs, profile(space.keyword_vector(["image generation"]), votes, learned), 2)
    assert set(top) == {4, 5}, "enough votes outweigh the keywords"
    assert train_learned(Votes(docs[[4]], docs[[3]]), docs) is None, "one like is not enough to learn from"


def test_a_refit_keeps_rankings_stable(tmp_path: Path) -> None:
    first = FeatureSpace.fit(PAPERS)
    grown = FeatureSpace.fit([*PAPERS, *(f"Another paper about topic {n} and evaluation." for n in range(5))])
    first.save(tmp_path)
    grown.save(tmp_path)
    loaded = FeatureSpace.load(tmp_path)
    assert loaded is not None and loaded.version == grown.version and loaded.n_docs == len(PAPERS) + 5
    for topics in (["LoRA"], ["graph neural networks"], ["diffusion models", "image generation"]):
        before = ranked(first, first.transform(PAPERS), first.keyword_vector(topics), 3)
        after = ranked(loaded, loaded.transform(PAPERS), loaded.keyword_vector(topics), 3)
        assert before[:2] == after[:2], topics


def test_choose_drops_weak_matches_and_near_duplicates() -> None:
    column = np.array([0.9, 0.88, 0.5, 0.02, 0.4], dtype=np.float32)
    similarity = np.eye(5)
    similarity[0, 1] = similarity[1, 0] = 0.95
    allowed = np.ones(5, bool)
    assert [i for i, _ in choose(column, allowed, None, 5, threshold=0.05)] == [0, 1, 2, 4]
    assert [i for i, _ in choose(column, allowed, similarity, 3, threshold=0.05, diversity=0.6)] == [0, 2, 4]
    allowed[0] = False
    assert choose(column, allowed, None, 1, threshold=0.05)[0][0] == 1
    assert choose(column, allowed, None, 3, threshold=0.95) == []


def test_reasons_name_the_topics_as_typed_or_the_liked_paper() -> None:
    space, docs = space_and_docs()
    explainer = Explainer(space, dict(enumerate(PAPERS)), docs)
    assert explainer.reason(3, ["image generation"]).startswith("Matches your topics: image generation")
    similarity = explainer.liked_similarity(docs[[4]])
    liked = [("Graph neural networks for molecules", float(similarity[5, 0]))]
    reason = explainer.reason(5, ["image generation"], None, liked)
    assert reason == "Like “Graph neural networks for molecules”, which you asked for more of"
    partial = explainer.reason(6, ["protein structure design with sparse human feedback"])
    assert partial == "Matches: human feedback", "the subscriber's own words found in the paper, as a phrase"
    assert term_index("graph neural") in explainer._columns(4)


def reference_mmr(column: np.ndarray, allowed: np.ndarray, similarity: np.ndarray) -> list[int]:
    """Maximal marginal relevance written the slow, obvious way."""
    pool = sorted(
        (i for i in range(len(column)) if allowed[i] and column[i] >= 0.5), key=lambda i: -column[i]
    )[:30]
    chosen: list[int] = []
    while pool and len(chosen) < 10:
        best = max(pool, key=lambda i: column[i] - 0.3 * max((similarity[i, j] for j in chosen), default=0.0))
        chosen.append(best)
        pool.remove(best)
    return chosen


def test_choosing_for_a_block_equals_choosing_for_each_subscriber() -> None:
    rng = np.random.default_rng(3)
    block = rng.random((40, 25)).astype(np.float32)
    allowed = rng.random((40, 25)) > 0.2
    docs = rng.random((40, 8))
    similarity = (docs @ docs.T) / np.outer(np.linalg.norm(docs, axis=1), np.linalg.norm(docs, axis=1))
    together = choose_block(block, allowed, similarity, 10, threshold=0.5, diversity=0.3, pool=30)
    for column in range(25):
        alone = choose(
            block[:, column], allowed[:, column], similarity, 10, threshold=0.5, diversity=0.3, pool=30
        )
        assert together[column] == alone
        assert [i for i, _ in alone] == reference_mmr(block[:, column], allowed[:, column], similarity)
        assert len({i for i, _ in alone}) == len(alone), "no paper twice"
        assert all(allowed[i, column] and block[i, column] >= 0.5 for i, _ in alone)
    few = choose(np.array([0.9, 0.1, 0.8], dtype=np.float32), np.ones(3, bool), np.eye(3), 5, threshold=0.5)
    assert [i for i, _ in few] == [0, 2], "fewer eligible than k: no padding, no repeats"


def test_keyword_priors_scored_through_topics_equal_the_explicit_rows() -> None:
    space, docs = space_and_docs()
    priors = KeywordProfiles(space, docs)
    topic_lists = [["LoRA"], ["diffusion models", "image generation"], ["MoE", "NAS", "LoRA"], ["zymurgy"]]
    explicit = scores(docs, sp.vstack([priors.vector(topics) for topics in topic_lists], format="csr"))
    assert np.allclose(priors.scores(docs, topic_lists), explicit, atol=1e-5)
    assert np.allclose(explicit[:, 3], 0), "a topic the corpus never mentions scores nothing"
