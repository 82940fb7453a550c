"""Fitting a query to the money left: the richest form within it, never below the floors."""

import pytest

from dnd_rag.logic.money.fitting import Fitter, Floors
from dnd_rag.logic.retrieval.prompt import build_messages
from dnd_rag.models.domain import Passage
from dnd_rag.pricing import PriceBook, TokenUsage
from dnd_rag.providers.tokenizer import count_chat_tokens

PRICES = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")
QUESTION = "How many experience points does a fighter need to become 9th level?"
PASSAGES = [
    Passage(str(n), f"Rule {n}: a fighter of level {n} needs {n * 1000} experience points. " * 8, f"s{n}.md", 0.5)
    for n in range(20)
]


def count(messages):
    return count_chat_tokens("gpt-4o-mini", messages)


@pytest.fixture
def fitter():
    return Fitter(count, PRICES, max_completion_tokens=500, floors=Floors(passages=2, completion_tokens=100))


def test_the_standard_form_is_priced_on_the_exact_prompt(fitter):
    fit = fitter.standard(QUESTION, PASSAGES)

    assert fit.prompt_tokens == count(build_messages(QUESTION, PASSAGES))
    assert fit.bound == PRICES.cost_nanos(TokenUsage(prompt_tokens=fit.prompt_tokens, completion_tokens=500))
    assert not fit.degraded


def test_a_hold_prices_every_prompt_token_at_the_full_input_rate_so_no_cache_hit_can_exceed_it():
    # Given a reasoning model whose cached input costs a tenth of its input
    book = PriceBook.for_models("gpt-5-mini", "text-embedding-3-small")
    fit = Fitter(count, book, max_completion_tokens=500, floors=Floors(2, 100)).standard(QUESTION, PASSAGES)

    # Then the hold is the uncached prompt plus the whole cap (reasoning and answer) at the output rate
    assert fit.bound == fit.prompt_tokens * 250 + 500 * 2000
    # and whatever OpenAI serves from its cache or spends on reasoning within the cap costs no more
    for cached in (0, 1024, fit.prompt_tokens):
        for completion, reasoning in ((500, 500), (500, 16), (0, 0)):
            usage = TokenUsage(fit.prompt_tokens, completion, 0, cached, reasoning)
            assert book.cost_nanos(usage) <= fit.bound


@pytest.mark.parametrize("share", [0.95, 0.6, 0.3, 0.2])
def test_the_best_fit_uses_the_most_passages_then_the_largest_cap_within_what_is_left(fitter, share):
    available = int(fitter.standard(QUESTION, PASSAGES).bound * share)

    fit = fitter.best_within(QUESTION, PASSAGES, available)

    assert fit is not None
    assert fit.degraded
    assert fit.bound <= available
    assert fit.max_completion_tokens >= 100
    assert len(fit.passages) >= 2
    one_more = fitter.best_within(QUESTION, PASSAGES[: len(fit.passages) + 1], available)
    # no richer form fits: one more passage would not fit even at the floor cap, or the cap is already full
    assert len(fit.passages) == len(PASSAGES) or one_more is None or len(one_more.passages) == len(fit.passages)
    cap_plus_one = PRICES.cost_nanos(
        TokenUsage(prompt_tokens=fit.prompt_tokens, completion_tokens=fit.max_completion_tokens + 1)
    )
    assert fit.max_completion_tokens == 500 or cap_plus_one > available


def test_below_the_floors_nothing_fits(fitter):
    smallest = fitter.smallest(QUESTION, PASSAGES)

    assert fitter.best_within(QUESTION, PASSAGES, smallest.bound) is not None
    assert fitter.best_within(QUESTION, PASSAGES, smallest.bound - 1) is None


def test_the_smallest_form_is_the_floors(fitter):
    smallest = fitter.smallest(QUESTION, PASSAGES)

    assert (len(smallest.passages), smallest.max_completion_tokens) == (2, 100)
