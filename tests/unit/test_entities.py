"""Comparison questions: which entities they name, and passage choices that represent each one."""

import pytest

from dnd_rag.logic.retrieval.entities import choose, comparison_entities
from dnd_rag.models.domain import Passage


@pytest.mark.parametrize(
    ("question", "entities"),
    [
        ("What is the difference between a red dragon and a white dragon?", ["red dragon", "white dragon"]),
        ("red dragon vs white dragon", ["red dragon", "white dragon"]),
        ("Red dragon versus white dragon: which is deadlier?", ["red dragon", "white dragon"]),
        ("Which is stronger, a fighter or a wizard?", ["fighter", "wizard"]),
        ("Compare the beholder with the mind flayer", ["beholder", "mind flayer"]),
        ("What is the difference between red and white dragons?", ["red dragons", "white dragons"]),
        ("How do a fighter, a wizard and a thief differ in hit points?", ["fighter", "wizard", "thief"]),
        ("Is a lich or a vampire more dangerous?", ["lich", "vampire"]),
    ],
)
def test_comparison_questions_name_their_entities(question, entities):
    assert comparison_entities(question) == entities


@pytest.mark.parametrize(
    "question",
    [
        "How many experience points does a fighter need to become 9th level?",
        "Tell me about beholders and dragons",  # two topics, but no comparison asked
        "What is a beholder?",
        "between",
    ],
)
def test_other_questions_name_none(question):
    assert comparison_entities(question) == []


def _hits(prefix: str, collection: str, scores: list[float]) -> list[Passage]:
    return [Passage(f"{prefix}{n}", prefix, f"{prefix}.md", s, collection=collection) for n, s in enumerate(scores)]


def test_each_entity_gets_a_place_among_the_first_passages():
    # Given a question whose own top 4 is all about red dragons
    question = _hits("red", "mm", [0.9, 0.85, 0.8, 0.75])
    entities = {"red dragon": _hits("red", "mm", [0.95, 0.9]), "white dragon": _hits("white", "mm", [0.7, 0.6])}

    # When four passages are chosen
    choice = choose(question, entities, k=4)

    # Then the question's best comes first and the white dragon's best is among the first three
    keys = [p.key for p in choice.passages]
    assert keys[0] == ("mm", "red0")
    assert ("mm", "white0") in keys[:3]
    assert len(keys) == len(set(keys)) == 4
    assert choice.via[("mm", "white0")] == "entity: white dragon"
    assert choice.via[("mm", "red0")] == "question"


def test_each_entity_is_guaranteed_up_to_three_passages_when_k_allows():
    question = _hits("q", "a", [0.9 - n / 100 for n in range(15)])
    entities = {"x": _hits("x", "a", [0.5, 0.4, 0.3, 0.2]), "y": _hits("y", "b", [0.5, 0.4, 0.3, 0.2])}

    choice = choose(question, entities, k=15)

    sources = [p.source for p in choice.passages]
    assert len(sources) == 15
    assert sources.count("x.md") == 3
    assert sources.count("y.md") == 3


def test_same_id_in_two_collections_is_two_passages():
    question = [Passage("c1", "t", "s", 0.9, collection="a")]
    entities = {"e": [Passage("c1", "t", "s", 0.8, collection="b")], "f": []}

    choice = choose(question, entities, k=5)

    assert [p.key for p in choice.passages] == [("a", "c1"), ("b", "c1")]


def test_without_entities_the_question_ranking_is_kept():
    question = _hits("q", "a", [0.9, 0.8, 0.7])

    assert choose(question, {}, k=2).passages == question[:2]
