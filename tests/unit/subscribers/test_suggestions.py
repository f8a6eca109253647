"""What the topic box suggests: phrases that read as topics, each variant once, each with how many recent
papers mention it; and the count for a whole typed topic. On small fixtures written for each rule, and on
the shared listings (817 papers of real ML listings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import Listing
from digest.services import Services
from digest.subscribers import suggestions
from digest.subscribers.suggestions import FUNCTION_WORDS, phrases_of, search_key, suggest, topic_matches


def add_papers(services: Services, papers: list[tuple[str, str]]) -> None:
    with transaction(services.sessions) as session:
        for title, abstract in papers:
            session.add(Listing(title_key=title.lower(), title=title, abstract=abstract, source="test"))


def topics(services: Services, prefix: str) -> list[str]:
    return [s.topic for s in suggest(services, prefix)]


# Small fixtures, one rule each ------------------------------------------------------------------------


def test_singular_plural_and_hyphen_variants_are_one_suggestion_under_the_usual_spelling(
    services: Services,
) -> None:
    add_papers(
        services,
        [
            ("Diffusion models for images", "We train diffusion models."),
            ("Diffusion models for audio", "A diffusion model for audio."),
            ("A diffusion model for video", "Video."),
            ("Sparse Mixture-of-Experts at scale", "Mixture of experts layers."),
            ("Mixture of experts for translation", "Translation."),
            ("Routing in mixture-of-experts models", "Routing."),
        ],
    )
    assert topics(services, "diffusion") == ["diffusion models"]
    mixture = topics(services, "mixture")
    assert [t for t in mixture if search_key(t) == "mixture of expert"] == ["mixture-of-experts"]
    assert len({search_key(t) for t in mixture}) == len(mixture), mixture


def test_fragments_and_lone_everyday_words_are_not_suggested(services: Services) -> None:
    add_papers(
        services,
        [
            ("Graph neural networks using attention", "Graph neural networks."),
            ("Graph neural networks for molecules", "Graph neural networks."),
            ("Scaling graph neural networks", "Graph neural networks at scale."),
            ("The dilemma of optics", "A dilemma."),
            ("Solving a dilemma in robotics", "A dilemma."),
            ("Towards robust neural networks", "Robust."),
            ("Towards fair neural networks", "Fair."),
            ("Pruning neural networks", "Smaller."),
            ("Neural networks in physics", "Physics."),
        ],
    )
    graph = topics(services, "graph")
    assert graph == ["graph neural networks"], "not 'graph neural', not 'graph'"
    neural = topics(services, "neural")
    assert "neural networks" in neural and "graph neural networks" in neural
    assert not any(t.split()[-1] in FUNCTION_WORDS or t.split()[0] in FUNCTION_WORDS for t in neural)
    assert "neural networks using" not in neural
    assert topics(services, "dilem") == [], "a lone everyday word is not a topic"
    assert topics(services, "towards") == []


def test_a_phrase_ending_where_titles_never_end_one_is_not_suggested(services: Services) -> None:
    # "augmented" is always followed by more of the topic, so "retrieval augmented" is the front of one;
    # no single longer phrase has enough of its papers to show that by counting alone.
    add_papers(
        services,
        [
            ("Retrieval-augmented generation for question answering", "x"),
            ("Retrieval augmented generation at scale", "x"),
            ("Retrieval augmented language models", "x"),
            ("Retrieval-augmented agents", "x"),
        ],
    )
    found = topics(services, "retrieval")
    assert "retrieval augmented" not in found and "retrieval-augmented" not in found
    assert [search_key(t) for t in found] == ["retrieval augmented generation"], found


def test_a_lone_word_is_suggested_when_it_is_a_name(services: Services) -> None:
    add_papers(
        services,
        [
            ("LoRA: Low-Rank Adaptation of Large Language Models", "LoRA freezes weights."),
            ("QLoRA and LoRA compared", "LoRA again."),
            ("Loss landscapes", "Loss."),
            ("Loss functions", "Loss."),
        ],
    )
    assert topics(services, "lora") == ["lora"]
    assert "loss" not in topics(services, "los")
    assert not any(": " in p or p.startswith("lora low") for p in phrases_of("LoRA: Low-Rank Adaptation"))


def test_each_suggestion_carries_the_count_of_recent_papers_that_mention_it(services: Services) -> None:
    add_papers(
        services,
        [
            ("Contrastive learning for speech", "Contrastive learning helps."),
            ("Better contrastive learning", "Images."),
            ("Audio tagging", "Uses contrastive-learning objectives."),  # hyphenated, in the abstract
            ("Audio captioning", "Nothing on that."),
        ],
    )
    [found] = suggest(services, "contrastive")
    assert (found.topic, found.papers) == ("contrastive learning", 3)


def test_a_phrase_no_recent_paper_mentions_is_not_suggested(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_papers(services, [("Protein folding with transformers", "Folding."), ("Protein folding", "x")])
    add_papers(services, [(f"Paper {n}", "About optics.") for n in range(3)])
    # Only the three newest papers count as recent: the vocabulary still knows the phrase, no count does.
    monkeypatch.setattr(suggestions, "RECENT_PAPERS", 3)
    suggestions._recent.clear()
    assert suggest(services, "protein") == []
    assert [(m.topic, m.papers) for m in topic_matches(services, ["protein folding", "optics"])] == [
        ("protein folding", 0),
        ("optics", 3),
    ]


def test_whole_topic_counts_fold_case_plurals_and_hyphens_and_follow_new_papers(services: Services) -> None:
    add_papers(services, [("Low-rank adaptation for vision", "We adapt."), ("Low rank adapters", "x")])
    counted = topic_matches(services, ["low rank adaptation", "Low-Rank Adaptations", "protein folding", ""])
    assert [m.papers for m in counted] == [1, 1, 0, 0]
    add_papers(services, [("Protein folding, revisited", "Folding.")])
    assert topic_matches(services, ["protein folding"])[0].papers == 1


# The shared listings ----------------------------------------------------------------------------------

PREFIXES = ["di", "diff", "neural", "large lang", "graph", "con", "trans", "deep", "mixture", "fine", "low"]


@pytest.fixture
def shared(services: Services, shared_listings: list[Path]) -> Services:
    ingest_paths(services.sessions, shared_listings)
    return services


def test_on_the_shared_listings_suggestions_read_as_topics(shared: Services) -> None:
    for prefix in PREFIXES:
        found = suggest(shared, prefix)
        assert found, prefix
        names = [s.topic for s in found]
        keys = [search_key(n) for n in names]
        assert len(set(keys)) == len(keys), f"variants of one phrase for {prefix!r}: {names}"
        for name in names:
            words = re.split(r"[\s-]+", name)
            assert words[0] not in FUNCTION_WORDS and words[-1] not in FUNCTION_WORDS, (prefix, name)
        for short in keys:
            for long in keys:
                if short != long and long.startswith(short + " "):
                    shorter = found[keys.index(short)].papers
                    longer = found[keys.index(long)].papers
                    assert longer < 0.6 * shorter, f"{short!r} is a fragment of {long!r} ({prefix!r})"
        assert all(s.papers > 0 for s in found)
        assert [s.papers for s in found if search_key(s.topic).startswith(search_key(prefix))] == sorted(
            (s.papers for s in found if search_key(s.topic).startswith(search_key(prefix))), reverse=True
        )
    assert topics(shared, "diff")[0] == "diffusion models"
    assert "large language models" in topics(shared, "large lang")
    assert "large language" not in topics(shared, "large lang")
    assert "graph neural" not in " | ".join(t for t in topics(shared, "graph") if t != "graph neural network")
    assert "dilemma" not in topics(shared, "di")


def test_on_the_shared_listings_the_hint_examples_match_and_protein_folding_not(shared: Services) -> None:
    counted = topic_matches(shared, ["diffusion models", "reinforcement learning", "protein folding"])
    papers = {m.topic: m.papers for m in counted}
    assert papers["diffusion models"] > 10 and papers["reinforcement learning"] > 10, papers
    assert papers["protein folding"] == 0
