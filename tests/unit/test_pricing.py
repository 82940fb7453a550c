from decimal import Decimal

import pytest

from dnd_rag.pricing import CHAT_PRICES, EMBEDDING_PRICES, PriceBook, TokenUsage, UnknownModelError


def test_gpt_4o_mini_cost_is_exact():
    book = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")

    cost = book.cost(TokenUsage(prompt_tokens=1000, completion_tokens=500, embedding_tokens=100))

    # 1000 x 0.15 + 500 x 0.60 + 100 x 0.02, per million tokens
    assert cost == Decimal("0.000452")


def test_gpt_4o_costs_more_than_mini_for_the_same_usage():
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=500)

    assert PriceBook.for_models("gpt-4o", "text-embedding-3-small").cost(usage) == Decimal("0.0075")
    assert PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small").cost(usage) == Decimal("0.00045")


def test_sums_of_many_small_costs_do_not_drift():
    book = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")
    one = book.cost(TokenUsage(prompt_tokens=1, completion_tokens=1, embedding_tokens=1))

    assert sum([one] * 1_000_000, Decimal(0)) == Decimal("0.77")


@pytest.mark.parametrize(
    ("chat", "embedding"), [("gpt-5-unknown", "text-embedding-3-small"), ("gpt-4o-mini", "embedding-unknown")]
)
def test_unknown_models_are_refused(chat, embedding):
    with pytest.raises(UnknownModelError):
        PriceBook.for_models(chat, embedding)


def test_the_table_covers_the_required_models():
    assert {"gpt-4o-mini", "gpt-4o", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo"} <= set(CHAT_PRICES)
    assert {"text-embedding-3-small", "text-embedding-3-large"} <= set(EMBEDDING_PRICES)
