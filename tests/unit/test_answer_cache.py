"""The answer cache's key: what makes two questions "identical", and what must tell them apart."""

import hashlib
import json
from dataclasses import replace

import pytest

from dnd_rag.logic.retrieval.answer_cache import CacheScope, cache_key, normalise
from dnd_rag.logic.retrieval.prompt import PROMPT_VERSION, build_messages
from dnd_rag.models.domain import Passage

SCOPE = CacheScope(
    chat_model="gpt-4o-mini",
    embedding_model="text-embedding-3-small",
    prompt_version=PROMPT_VERSION,
    max_completion_tokens=500,
    entity_queries=True,
    collections=("dnd_rules",),
)
FIGHTER = "How many experience points does a fighter need to become 9th level?"

# The prompt's text and layout, hashed, per PROMPT_VERSION. Changed the prompt? Give PROMPT_VERSION a
# new value and pin the new hash here: otherwise answers to the old prompt keep being served.
PINNED_PROMPTS = {
    "2026-12-01": "690c06e59e57c97256e9c3e5c5422627d94f57be5e6d2046d499cb186c00ff30",
    # the question fenced in its own message (issue 19)
    "2026-12-04": "c53d4f1193591ea9ccb1bafa0b905227c673c0800bcecbc2b30a8ff70e983257",
}


@pytest.mark.parametrize(
    "variant",
    [
        FIGHTER,
        FIGHTER.upper(),
        f"  {FIGHTER}\n",
        FIGHTER.replace(" ", "   "),
        FIGHTER.replace(" ", "\t"),
        FIGHTER.replace(" ", "\u00a0"),  # no-break spaces (NFKC: plain spaces)
        FIGHTER.replace("9th", "\uff19th"),  # a full-width digit nine (NFKC: 9)
    ],
)
def test_case_whitespace_and_unicode_variants_share_one_key(variant):
    assert cache_key(variant, 15, SCOPE) == cache_key(FIGHTER, 15, SCOPE)


def test_normalisation_folds_case_nfkc_and_whitespace():
    assert normalise("  Straße\u2003 ﬁghter\n\tLEVEL ") == "strasse fighter level"


def test_different_words_are_different_questions():
    assert cache_key(FIGHTER.replace("9th", "10th"), 15, SCOPE) != cache_key(FIGHTER, 15, SCOPE)


@pytest.mark.parametrize(
    "changed",
    [
        {"chat_model": "gpt-4o"},
        {"embedding_model": "text-embedding-3-large"},
        {"prompt_version": "another"},
        {"max_completion_tokens": 150},
        {"entity_queries": False},
        {"collections": ("dnd_rules", "monster_manual")},
        {"chat_model": "gpt-5-mini", "reasoning_effort": "minimal"},
    ],
)
def test_everything_that_changes_an_answer_changes_the_key(changed):
    assert cache_key(FIGHTER, 15, replace(SCOPE, **changed)) != cache_key(FIGHTER, 15, SCOPE)


def test_a_reasoning_models_effort_is_part_of_the_key_and_other_models_keys_are_unchanged():
    minimal = replace(SCOPE, chat_model="gpt-5-mini", reasoning_effort="minimal")

    assert cache_key(FIGHTER, 15, replace(minimal, reasoning_effort="low")) != cache_key(FIGHTER, 15, minimal)
    # the key a non-reasoning model had before reasoning_effort existed
    assert cache_key(FIGHTER, 15, SCOPE) == "678ef99c34a8fac35280183f752a5805ec36262f5cc2c0b7c2ed467ae2489c3d"


def test_k_is_part_of_the_key():
    assert cache_key(FIGHTER, 5, SCOPE) != cache_key(FIGHTER, 15, SCOPE)


def test_the_order_collections_are_listed_in_does_not_matter():
    one = replace(SCOPE, collections=("players_handbook", "monster_manual"))
    other = replace(SCOPE, collections=("monster_manual", "players_handbook"))

    assert cache_key(FIGHTER, 15, one) == cache_key(FIGHTER, 15, other)


def test_the_key_is_a_sha256_that_never_contains_the_question():
    key = cache_key(FIGHTER, 15, SCOPE)

    assert len(key) == 64
    assert int(key, 16) >= 0
    assert "fighter" not in key


def test_the_prompt_version_changes_whenever_the_prompt_does():
    sample = [Passage("c1", "x" * 2500, "s" * 200, 0.5, "T", "book", 7), Passage("c2", "Short text.", "a.md", 0.4)]
    fingerprint = hashlib.sha256(json.dumps(build_messages("Q?", sample)).encode()).hexdigest()

    assert PINNED_PROMPTS.get(PROMPT_VERSION) == fingerprint, (
        "the prompt changed: give PROMPT_VERSION (logic/retrieval/prompt.py) a new value and pin this hash for it"
    )
