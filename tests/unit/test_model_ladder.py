"""The model ladder (OPENAI_MODEL_FALLBACKS): which models may be on it (checked at cold start), and
which form of a query it chooses for the money left: the first model whose standard form fits,
then shrinking on the cheapest model, down to its floors."""

import json

import pytest

from dnd_rag.logic.money.fitting import Fitter, Floors, Ladder
from dnd_rag.models.domain import Passage
from dnd_rag.pricing import PriceBook
from dnd_rag.providers.tokenizer import count_chat_tokens
from dnd_rag.settings import ConfigError, load_settings

MINIMAL = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-local"}
QUESTION = "How many experience points does a fighter need to become 9th level?"
PASSAGES = [
    Passage(str(n), f"Rule {n}: a fighter of level {n} needs {n * 1000} experience points. " * 8, f"s{n}.md", 0.5)
    for n in range(15)
]


def fitter(model):
    book = PriceBook.for_models(model, "text-embedding-3-small")
    return Fitter(lambda messages: count_chat_tokens(model, messages), book, 500, Floors(2, 100))


def ladder(*models):
    return Ladder([fitter(model) for model in models])


# --- which models may be on the ladder -------------------------------------------------------


def test_no_fallbacks_by_default_and_an_empty_value_is_none():
    assert load_settings(MINIMAL).chat_models == ["gpt-4o-mini"]
    assert load_settings({**MINIMAL, "OPENAI_MODEL_FALLBACKS": ""}).openai_model_fallbacks == []


def test_cheaper_models_in_order_make_a_ladder():
    settings = load_settings(
        {**MINIMAL, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": " gpt-4o-mini , gpt-5-nano"}
    )

    assert settings.chat_models == ["gpt-5-mini", "gpt-4o-mini", "gpt-5-nano"]
    assert settings.price_book_for("gpt-5-nano").chat.input == 50


def test_an_unpriced_fallback_refuses_to_start():
    with pytest.raises(ConfigError, match=r"^OPENAI_MODEL_FALLBACKS: no price for 'gpt-9-nano' in price file "):
        load_settings({**MINIMAL, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": "gpt-9-nano"})


@pytest.mark.parametrize(
    ("model", "fallbacks", "offender", "before"),
    [
        ("gpt-5-nano", "gpt-5-mini", "gpt-5-mini", "gpt-5-nano"),  # dearer
        ("gpt-5-mini", "gpt-5-mini", "gpt-5-mini", "gpt-5-mini"),  # the same model
        ("gpt-5-mini", "gpt-5-nano,gpt-4.1-nano", "gpt-4.1-nano", "gpt-5-nano"),  # not in order, cheapest last
    ],
)
def test_a_fallback_not_cheaper_than_the_model_before_it_refuses_to_start(model, fallbacks, offender, before):
    with pytest.raises(ConfigError, match=rf"^OPENAI_MODEL_FALLBACKS: '{offender}' .* is not cheaper than '{before}'"):
        load_settings({**MINIMAL, "OPENAI_MODEL": model, "OPENAI_MODEL_FALLBACKS": fallbacks})


def test_a_fallback_cheaper_on_input_but_dearer_on_output_is_not_cheaper():
    # a model cheaper on input but dearer on output may cost more for a long answer: not a fallback
    entry = {"effective": "2026-12-04", "source": "https://example.com/prices"}
    prices = {
        "version": "t",
        "chat": {
            "gpt-4o-a": {**entry, "input": 0.2, "output": 0.4},
            "gpt-4o-b": {**entry, "input": 0.1, "output": 0.8},
        },
        "embeddings": {"text-embedding-3-small": {**entry, "input": 0.02}},
    }
    env = {**MINIMAL, "PRICES_JSON": json.dumps(prices), "OPENAI_MODEL": "gpt-4o-a"}

    with pytest.raises(ConfigError, match=r"OPENAI_MODEL_FALLBACKS: 'gpt-4o-b' .* is not cheaper than 'gpt-4o-a'"):
        load_settings({**env, "OPENAI_MODEL_FALLBACKS": "gpt-4o-b"})


def test_a_fallback_without_a_shipped_tokenizer_refuses_to_start():
    entry = {"effective": "2026-12-04", "source": "https://example.com/prices"}
    prices = {
        "version": "t",
        "chat": {
            "gpt-4o-mini": {**entry, "input": 0.2, "output": 0.8},
            "o9-nano": {**entry, "input": 0.1, "output": 0.4},
        },
        "embeddings": {"text-embedding-3-small": {**entry, "input": 0.02}},
    }
    env = {**MINIMAL, "OPENAI_API_KEY": "sk-x", "PRICES_JSON": json.dumps(prices), "OPENAI_MODEL_FALLBACKS": "o9-nano"}

    with pytest.raises(ConfigError, match="OPENAI_MODEL_FALLBACKS: no tokenizer known for model 'o9-nano'"):
        load_settings(env)


# --- which form the ladder chooses -----------------------------------------------------------


def test_with_money_for_the_standard_form_the_configured_model_answers_in_full():
    rungs = ladder("gpt-5-mini", "gpt-5-nano")
    standard = rungs.standard(QUESTION, PASSAGES)

    fit = rungs.best_within(QUESTION, PASSAGES, standard.bound)

    assert fit == standard
    assert (fit.model, fit.degraded) == ("gpt-5-mini", False)


def test_short_of_the_standard_form_the_next_cheaper_model_answers_with_every_passage_and_the_whole_cap():
    rungs = ladder("gpt-5-mini", "gpt-5-nano")
    mini = fitter("gpt-5-mini").standard(QUESTION, PASSAGES)
    nano = fitter("gpt-5-nano").standard(QUESTION, PASSAGES)

    fit = rungs.best_within(QUESTION, PASSAGES, mini.bound - 1)

    assert fit is not None
    assert (fit.model, fit.degraded, len(fit.passages), fit.max_completion_tokens) == ("gpt-5-nano", True, 15, 500)
    assert fit.bound == nano.bound
    # even though the configured model would have fitted with a smaller cap
    assert fitter("gpt-5-mini").best_within(QUESTION, PASSAGES, mini.bound - 1) is not None


def test_the_first_fallback_whose_standard_form_fits_answers_not_the_cheapest():
    rungs = ladder("gpt-5-mini", "gpt-4o-mini", "gpt-5-nano")
    mini = fitter("gpt-5-mini").standard(QUESTION, PASSAGES)
    four_o = fitter("gpt-4o-mini").standard(QUESTION, PASSAGES)
    assert four_o.bound < mini.bound

    fit = rungs.best_within(QUESTION, PASSAGES, four_o.bound)

    assert fit is not None
    assert (fit.model, len(fit.passages), fit.max_completion_tokens) == ("gpt-4o-mini", 15, 500)
    assert rungs.best_within(QUESTION, PASSAGES, four_o.bound - 1).model == "gpt-5-nano"


def test_short_of_every_standard_form_the_query_shrinks_on_the_cheapest_model_down_to_its_floors():
    rungs = ladder("gpt-5-mini", "gpt-5-nano")
    nano = fitter("gpt-5-nano")
    available = nano.standard(QUESTION, PASSAGES).bound - 1

    fit = rungs.best_within(QUESTION, PASSAGES, available)

    assert fit == nano.best_within(QUESTION, PASSAGES, available)
    assert fit is not None
    assert fit.model == "gpt-5-nano"
    assert fit.degraded
    assert fit.bound <= available
    smallest = rungs.smallest(QUESTION, PASSAGES)
    assert smallest == nano.smallest(QUESTION, PASSAGES)
    assert rungs.best_within(QUESTION, PASSAGES, smallest.bound).model == "gpt-5-nano"
    assert rungs.best_within(QUESTION, PASSAGES, smallest.bound - 1) is None


def test_a_fallback_shrunk_keeping_every_passage_and_the_cap_is_still_degraded():
    # the cheapest model's best form within what is left is degraded: another model than the configured one
    rungs = ladder("gpt-5-mini", "gpt-5-nano")
    nano = fitter("gpt-5-nano").standard(QUESTION, PASSAGES)

    fit = rungs.best_within(QUESTION, PASSAGES[:3], nano.bound)

    assert fit is not None
    assert (fit.model, fit.degraded) == ("gpt-5-nano", True)


def test_the_cheapest_query_there_is_is_priced_on_the_cheapest_model():
    rungs = ladder("gpt-5-mini", "gpt-5-nano")
    nano = fitter("gpt-5-nano")

    assert rungs.floor_bound(QUESTION) == nano.chat_bound(nano.frame_tokens(QUESTION), floor=True)
    assert rungs.floor_bound(QUESTION) < fitter("gpt-5-mini").chat_bound(rungs.frame_tokens(QUESTION), floor=True)


def test_each_model_counts_the_prompt_with_its_own_tokenizer():
    # gpt-4o (o200k_base) falling back to gpt-3.5-turbo (cl100k_base): the fallback's form is counted
    # and priced with the fallback's encoding
    rungs = ladder("gpt-4o", "gpt-3.5-turbo")
    standard = rungs.standard(QUESTION, PASSAGES)

    fit = rungs.best_within(QUESTION, PASSAGES, standard.bound - 1)

    assert fit is not None
    assert fit.model == "gpt-3.5-turbo"
    assert fit.prompt_tokens == count_chat_tokens("gpt-3.5-turbo", fit.messages)
    assert fit.prompt_tokens != count_chat_tokens("gpt-4o", fit.messages)
