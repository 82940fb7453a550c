"""The reservation is an upper bound: no prompt the generator can build may exceed it."""

import pytest

from dnd_rag.logic.budget import CostBound, budget_info, percentage
from dnd_rag.logic.prompt import MAX_PASSAGE_BYTES, build_messages, clip, embedding_token_bound, prompt_token_bound
from dnd_rag.logic.text import count_tokens
from dnd_rag.models.domain import Passage
from dnd_rag.pricing import PriceBook, TokenUsage

WORST_TEXTS = [
    "a" * 10_000,  # one long word: few tokens, many bytes
    "! " * 10_000,  # punctuation: a token per two bytes
    "é" * 5_000,  # two bytes per character
    "👁" * 3_000,  # four bytes per character
    "word " * 3_000,
]


def prompt_bytes(question, passages):
    return sum(len(m["content"].encode()) for m in build_messages(question, passages))


@pytest.mark.parametrize("text", WORST_TEXTS)
@pytest.mark.parametrize("k", [1, 3, 15, 50])
def test_the_bound_covers_the_largest_possible_prompt(text, k):
    question = "Why? " * 400
    passages = [Passage(id=str(n), text=text, source="s" * 500, score=0.5) for n in range(k)]

    bound = prompt_token_bound(question, k)

    assert prompt_bytes(question, passages) < bound  # bytes bound any byte-level tokenizer
    assert sum(count_tokens(m["content"]) for m in build_messages(question, passages)) < bound  # and the offline one


def test_passages_are_clipped_without_breaking_characters():
    clipped = clip("é" * 2000, MAX_PASSAGE_BYTES)

    assert len(clipped.encode()) <= MAX_PASSAGE_BYTES
    assert clipped == "é" * (MAX_PASSAGE_BYTES // 2)


def test_fewer_passages_than_k_stay_under_the_bound():
    question = "What is a beholder?"

    assert prompt_bytes(question, []) < prompt_token_bound(question, 15)


def test_embedding_bound_covers_the_question():
    question = "👁" * 100

    assert embedding_token_bound(question) >= len(question.encode()) >= count_tokens(question)


def test_cost_bound_prices_the_bounds_at_the_model_rates():
    prices = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")
    question = "What is a beholder?"

    expected = prices.cost_nanos(TokenUsage(prompt_token_bound(question, 15), 500, embedding_token_bound(question)))

    assert CostBound(prices, 500).for_question(question, 15) == expected
    assert expected < 10_000_000  # under a cent with k=15: the $1 default budget holds 200+ in flight


def test_budget_info_reports_dollars_and_percentage():
    assert budget_info(spent=456_789_000, limit=1_000_000_000) == {
        "daily_total": 0.456789,
        "daily_budget": 1.0,
        "percentage": 45.68,
    }
    assert percentage(1, 0) == 100.0
