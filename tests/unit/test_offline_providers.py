import math

from dnd_rag.logic.retrieval.prompt import build_messages
from dnd_rag.logic.retrieval.text import count_tokens, sentences, terms
from dnd_rag.models.domain import Passage, Prompt
from dnd_rag.providers.offline import DIMENSIONS, ExtractiveGenerator, OfflineEmbedder, hash_embedding


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_are_deterministic_unit_vectors():
    first = hash_embedding("A red dragon breathes fire.")
    second = hash_embedding("A red dragon breathes fire.")

    assert first == second
    assert len(first) == DIMENSIONS
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0)


def test_related_texts_are_closer_than_unrelated_ones():
    question = hash_embedding("How many experience points does a fighter need for 9th level?")
    fighter = hash_embedding("A fighter needs 250,001 experience points to reach 9th level.")
    dragon = hash_embedding("A white dragon breathes a cone of frost.")

    assert cosine(question, fighter) > cosine(question, dragon) + 0.2


def test_embedder_reports_the_tokens_it_read():
    result = OfflineEmbedder().embed(["one two three.", "four"])

    assert result.tokens == count_tokens("one two three.") + count_tokens("four") == 5
    assert len(result.vectors) == 2


def test_terms_drop_stopwords_and_normalise_numbers():
    assert terms("How many experience points does a fighter need at 250,001?") == [
        "experience",
        "point",
        "fighter",
        "need",
        "250001",
    ]


def test_sentences_keep_table_rows_whole():
    text = "| Level | XP |\n|---|---|\n| 9 | 250,001 |\n\nA fighter fights. A wizard casts."

    assert sentences(text) == ["| Level | XP |", "| 9 | 250,001 |", "A fighter fights.", "A wizard casts."]


def prompt(question, passages):
    return Prompt(question, passages, build_messages(question, passages))


def passage(n, text, source):
    return Passage(id=f"p{n}", text=text, source=source, score=0.5)


def test_extractive_answer_quotes_the_best_sentence_and_counts_tokens():
    generator = ExtractiveGenerator()
    passages = [
        passage(1, "A fighter needs 250,001 experience points to reach 9th level. Fighters wear armour.", "fighter.md"),
        passage(2, "A beholder floats.", "beholder.md"),
    ]

    result = generator.generate(
        prompt("How many experience points does a fighter need to become 9th level?", passages), 500
    )

    assert "250,001" in result.answer
    assert "beholder" not in result.answer
    assert result.completion_tokens == count_tokens(result.answer)
    assert result.prompt_tokens > count_tokens(passages[0].text)


def test_extractive_answer_covers_each_relevant_source():
    generator = ExtractiveGenerator()
    passages = [
        passage(1, "A red dragon breathes fire.", "red.md"),
        passage(2, "A white dragon breathes frost.", "white.md"),
    ]

    answer = generator.generate(prompt("Compare the red dragon and the white dragon", passages), 500).answer

    assert "fire" in answer
    assert "frost" in answer


def test_extractive_answer_respects_max_completion_tokens():
    generator = ExtractiveGenerator()
    passages = [passage(1, "A fighter needs 250,001 experience points to reach 9th level.", "f.md")]

    result = generator.generate(prompt("fighter experience 9th level", passages), 8)

    assert result.completion_tokens <= 8


def test_no_match_says_so():
    result = ExtractiveGenerator().generate(
        prompt("What about spaceships?", [passage(1, "A beholder floats.", "b.md")]), 500
    )

    assert result.answer == "I could not find that in the rules I have."


def test_a_comparison_answer_quotes_each_entity_even_when_one_side_ranks_low():
    # Given four strong red-dragon sources and the white dragon's only passage ranked last
    generator = ExtractiveGenerator()
    reds = [
        passage(n, f"The red dragon difference number {n} is its fiery breath and red scales.", "red.md")
        for n in range(1, 5)
    ]
    white = passage(5, "A white dragon lives in arctic lairs.", "white.md")

    # When a comparison question is answered from them
    answer = generator.generate(
        prompt("What is the difference between a red dragon and a white dragon?", [*reds, white]), 500
    ).answer

    # Then both dragons are quoted
    assert "red dragon" in answer
    assert "white dragon lives in arctic lairs" in answer
