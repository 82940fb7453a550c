"""The price file: loaded and validated once, overridable, exact to the nano-dollar, cached input discounted."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from dnd_rag.pricing import (
    SHIPPED_PRICES,
    PriceBook,
    PriceFile,
    PriceFileError,
    TokenUsage,
    UnknownModelError,
    load_prices,
    parse_prices,
)

# What issue 20 asks the shipped file to hold, checked against OpenAI's pricing pages (input,
# cached input, output per 1M tokens; embeddings: input).
REQUIRED_CHAT = {
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4-turbo": ("10.00", "10.00", "30.00"),  # OpenAI lists no cached price: cached = input
    "gpt-4": ("30.00", "30.00", "60.00"),
    "gpt-3.5-turbo": ("0.50", "0.50", "1.50"),
}
REQUIRED_EMBEDDINGS = {"text-embedding-3-small": "0.02", "text-embedding-3-large": "0.13"}


def price_file(**chat_fields):
    """A minimal valid price file as a dict, gpt-test's entry updated with ``chat_fields``."""
    entry = {"input": 0.40, "cached_input": 0.10, "output": 1.60, "effective": "2026-12-04"}
    entry["source"] = "https://developers.openai.com/api/docs/pricing"
    entry.update(chat_fields)
    embedding = {"input": 0.02, "effective": "2026-12-04", "source": "https://developers.openai.com/api/docs/pricing"}
    return {"version": "test-1", "chat": {"gpt-test": entry}, "embeddings": {"emb-test": embedding}}


def test_the_shipped_file_holds_the_required_models_at_their_published_prices():
    prices = load_prices()

    for model, (input_price, cached, output) in REQUIRED_CHAT.items():
        entry = prices.chat[model]
        cached_price = entry.cached_input if entry.cached_input is not None else entry.input
        assert (entry.input, cached_price, entry.output) == (Decimal(input_price), Decimal(cached), Decimal(output))
        assert entry.source.startswith("https://developers.openai.com/")
        assert entry.effective <= date(2026, 12, 4)
    for model, input_price in REQUIRED_EMBEDDINGS.items():
        assert prices.embeddings[model].input == Decimal(input_price)
    assert {model for model, entry in prices.chat.items() if entry.reasoning} == {"gpt-5-mini", "gpt-5-nano"}


def test_the_shipped_file_fits_a_standard_ssm_parameter():
    compact = json.dumps(json.loads(SHIPPED_PRICES.read_text()), separators=(",", ":"))

    assert len(compact.encode()) <= 4096  # PRICES_PARAMETER: a standard-tier parameter holds 4 KB


def test_gpt_4o_mini_cost_is_exact():
    book = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")

    cost = book.cost(TokenUsage(prompt_tokens=1000, completion_tokens=500, embedding_tokens=100))

    # 1000 x 0.15 + 500 x 0.60 + 100 x 0.02, per million tokens
    assert cost == Decimal("0.000452")


def test_cached_prompt_tokens_cost_the_cached_price():
    # Given gpt-5-mini: 0.25 / 0.025 / 2.00 per 1M = 250 / 25 / 2000 nano-dollars a token
    book = PriceBook.for_models("gpt-5-mini", "text-embedding-3-small")

    # When 1,152 of 1,500 prompt tokens were served from OpenAI's cache
    cost = book.cost_nanos(TokenUsage(prompt_tokens=1500, completion_tokens=200, cached_tokens=1152))

    # Then (prompt - cached) x input + cached x cached_input + completion x output
    assert cost == 348 * 250 + 1152 * 25 + 200 * 2000
    assert cost < book.cost_nanos(TokenUsage(prompt_tokens=1500, completion_tokens=200))


@pytest.mark.parametrize(
    ("model", "discount"),
    [("gpt-5-nano", Decimal("0.9")), ("gpt-4.1-nano", Decimal("0.75")), ("gpt-4o", Decimal("0.5"))],
)
def test_each_family_discounts_cached_input_as_openai_does(model, discount):
    book = PriceBook.for_models(model, "text-embedding-3-small")
    full = book.cost_nanos(TokenUsage(prompt_tokens=1024))

    cached = book.cost_nanos(TokenUsage(prompt_tokens=1024, cached_tokens=1024))

    assert Decimal(full - cached) / full == discount


def test_reasoning_tokens_are_billed_as_output_inside_completion_tokens():
    book = PriceBook.for_models("gpt-5-nano", "text-embedding-3-small")

    thinking = book.cost_nanos(TokenUsage(prompt_tokens=100, completion_tokens=300, reasoning_tokens=250))

    assert thinking == book.cost_nanos(TokenUsage(prompt_tokens=100, completion_tokens=300)) == 100 * 50 + 300 * 400


def test_cached_tokens_never_count_beyond_the_prompt():
    book = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")

    assert book.cost_nanos(TokenUsage(prompt_tokens=10, cached_tokens=50)) == 10 * 75


def test_usage_adds_up_with_its_cached_and_reasoning_tokens():
    total = TokenUsage(10, 5, 1, 4, 2) + TokenUsage(20, 6, 0, 8, 3)

    assert total == TokenUsage(30, 11, 1, 12, 5)
    assert (total.cached_prompt_tokens, total.uncached_prompt_tokens) == (12, 18)


def test_sums_of_many_small_costs_do_not_drift():
    book = PriceBook.for_models("gpt-4o-mini", "text-embedding-3-small")
    one = book.cost(TokenUsage(prompt_tokens=1, completion_tokens=1, embedding_tokens=1, cached_tokens=1))

    # 0.075 + 0.60 + 0.02 per 1M tokens: 695 nano-dollars, a million times
    assert sum([one] * 1_000_000, Decimal(0)) == Decimal("0.695")


@pytest.mark.parametrize(
    ("chat", "embedding", "variable"),
    [
        ("gpt-9-unknown", "text-embedding-3-small", "OPENAI_MODEL"),
        ("gpt-4o-mini", "embedding-unknown", "EMBEDDING_MODEL"),
    ],
)
def test_unknown_models_are_refused_naming_the_variable_and_the_file(chat, embedding, variable):
    with pytest.raises(UnknownModelError, match=rf"{variable}: no price for .* in price file 2026-12-04"):
        PriceBook.for_models(chat, embedding)


def test_a_price_book_comes_from_the_file_it_is_given():
    prices = parse_prices(json.dumps(price_file()), "test")

    book = PriceBook.for_models("gpt-test", "emb-test", prices)

    assert (book.chat.input, book.chat.cached_input, book.chat.output, book.embedding) == (400, 100, 1600, 20)
    assert book.version == "test-1"
    with pytest.raises(UnknownModelError):
        PriceBook.for_models("gpt-4o-mini", "emb-test", prices)  # the shipped models are not merged in


def test_a_missing_cached_price_means_the_input_price():
    entry = price_file()
    del entry["chat"]["gpt-test"]["cached_input"]

    book = PriceBook.for_models("gpt-test", "emb-test", parse_prices(json.dumps(entry), "test"))

    assert book.chat.cached_input == book.chat.input == 400


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": 0.0000001}, r"chat\.gpt-test\.input: .*not a whole number of nano-dollars per token"),
        ({"cached_input": 0.0125}, r"chat\.gpt-test\.cached_input: .*not a whole number of nano-dollars"),
        ({"output": -1}, r"chat\.gpt-test\.output: .*greater than or equal to 0"),
        ({"cached_input": 0.5}, r"cached_input 0\.5 is above input 0\.4"),
        ({"effective": "soon"}, r"chat\.gpt-test\.effective"),
        ({"source": "http://example.com"}, r"chat\.gpt-test\.source"),
        ({"inptu": 1}, r"chat\.gpt-test\.inptu: Extra inputs are not permitted"),
        ({"output": "NaN"}, r"chat\.gpt-test\.output"),
    ],
)
def test_a_price_file_that_breaks_the_rules_is_refused_naming_the_entry(change, message):
    with pytest.raises(PriceFileError, match=rf"^my-origin: not a valid price file \(.*{message}"):
        parse_prices(json.dumps(price_file(**change)), "my-origin")


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"version": "x", "chat": {}, "embeddings": {}}', '{"chat": {}, "embeddings": {}}'],
)
def test_a_file_that_is_not_a_price_file_is_refused(text):
    with pytest.raises(PriceFileError, match=r"^here: not a valid price file"):
        parse_prices(text, "here")


def test_an_override_file_replaces_the_shipped_prices(tmp_path: Path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(price_file(input=0.5, cached_input=0.05)))

    prices = load_prices(str(path))

    assert isinstance(prices, PriceFile)
    assert set(prices.chat) == {"gpt-test"}
    assert PriceBook.for_models("gpt-test", "emb-test", prices).chat.input == 500


def test_an_override_given_as_text_wins_and_is_named_as_the_ssm_parameter():
    prices = load_prices(None, json.dumps(price_file(output=3)))

    assert prices.chat["gpt-test"].output == 3
    with pytest.raises(PriceFileError, match=r"^PRICES_PARAMETER: not a valid price file"):
        load_prices(None, "{}")


def test_an_unreadable_override_file_is_refused_naming_it(tmp_path: Path):
    with pytest.raises(PriceFileError, match=r"^PRICES_FILE: cannot read .*absent\.json"):
        load_prices(str(tmp_path / "absent.json"))
