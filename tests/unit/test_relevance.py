"""The relevance gate's rule, its thresholds per embedding model, and the offline embedder's scores
on the sample corpus: its questions above the default, off-corpus ones below."""

import pytest

from dnd_rag.logic.retrieval.chunking import chunk_document
from dnd_rag.logic.retrieval.relevance import RelevanceGate
from dnd_rag.models.domain import Passage
from dnd_rag.providers.offline import OFFLINE_EMBEDDING_MODEL, hash_embedding
from dnd_rag.settings import ConfigError, load_settings, relevance_defaults
from tests.support.servers import REPO_ROOT

BASE = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-test"}


def passages(*scores):
    return [Passage(id=f"p{n}", text="", source="s", score=score) for n, score in enumerate(scores)]


def test_a_passage_at_or_above_the_threshold_covers_the_question():
    gate = RelevanceGate(0.3)

    assert gate.covers(passages(0.1, 0.3))
    assert gate.covers(passages(0.9))
    assert not gate.covers(passages(0.29, 0.1))
    assert not gate.covers([])  # nothing retrieved at all (an empty collection)


def test_zero_switches_the_gate_off_whatever_was_retrieved():
    gate = RelevanceGate(0.0)

    assert gate.covers(passages(0.0))
    assert gate.covers([])


def test_the_threshold_is_the_embedding_models_default_unless_min_relevance_is_set():
    settings = load_settings(BASE)

    assert settings.min_relevance_for(OFFLINE_EMBEDDING_MODEL) == relevance_defaults()[OFFLINE_EMBEDDING_MODEL] == 0.3
    assert settings.min_relevance_for("text-embedding-3-small") == 0.25
    assert settings.min_relevance_for("text-embedding-3-large") == 0.25
    assert settings.min_relevance_for("a-model-nobody-calibrated") == 0.0  # off
    assert load_settings({**BASE, "MIN_RELEVANCE": "0.5"}).min_relevance_for(OFFLINE_EMBEDDING_MODEL) == 0.5
    assert load_settings({**BASE, "MIN_RELEVANCE": "0"}).min_relevance_for("text-embedding-3-small") == 0.0


@pytest.mark.parametrize("value", ["1.5", "abc", "-0.1", "nan", "inf"])
def test_an_invalid_min_relevance_is_refused_naming_it(value):
    with pytest.raises(ConfigError, match=r"MIN_RELEVANCE: "):
        load_settings({**BASE, "MIN_RELEVANCE": value})


SAMPLE_QUESTIONS = [  # the README's and the e2e tests' questions about the sample corpus
    "How many experience points does a fighter need to become 9th level?",
    "What is the difference between a red dragon and a white dragon?",
    "What is a beholder? (6)",
    "How does a red dragon fight?",
    "What is a white dragon's breath?",
    "How do spell slots work? (dev-alice)",
    "What can a fighter do at 9th level?",
    "What is the range of fireball?",
]
OFF_CORPUS = [
    "How many hit points does a Glimmerwight have?",
    "What does a gelatinous cube do?",
    "What is a mind flayer?",
    "What is the capital of France?",
    "hi",
]


def best_score(question, vectors):
    query = hash_embedding(question)
    return max(sum(q * v for q, v in zip(query, vector, strict=True)) for vector in vectors)


def test_the_offline_embedder_separates_the_sample_corpus_questions_from_off_corpus_ones():
    chunks = [
        c
        for path in sorted((REPO_ROOT / "infra" / "corpus").glob("*.md"))
        for c in chunk_document(path.read_text(), path.name)
    ]
    vectors = [hash_embedding(chunk.text) for chunk in chunks]
    threshold = relevance_defaults()[OFFLINE_EMBEDDING_MODEL]

    covered = {q: best_score(q, vectors) for q in SAMPLE_QUESTIONS}
    uncovered = {q: best_score(q, vectors) for q in OFF_CORPUS}

    assert min(covered.values()) >= threshold, covered
    assert max(uncovered.values()) < threshold / 2, uncovered
