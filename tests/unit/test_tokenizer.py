"""Prompt tokens are counted exactly with OpenAI's tokenizer, from files shipped with the code."""

import socket

import pytest

from dnd_rag.providers import tokenizer
from dnd_rag.providers.tokenizer import count_chat_tokens, count_text_tokens, encoding_name


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the encodings must come from the package."""

    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tokenizer.encoding.cache_clear()
    yield
    tokenizer.encoding.cache_clear()


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),  # not plain gpt-4's encoding: the gpt-4.1 family is o200k
        ("gpt-5-nano", "o200k_base"),
        ("gpt-4", "cl100k_base"),
    ],
)
def test_encodings_load_with_the_network_off(no_network, model, name):
    assert encoding_name(model) == name
    assert tokenizer.encoding(model).name == name
    assert count_text_tokens(model, "hello world") == 2


def test_known_token_ids_of_each_encoding(no_network):
    # reference ids published with the encodings (tiktoken's own test vectors)
    assert tokenizer.encoding("gpt-4").encode("hello world") == [15339, 1917]
    assert tokenizer.encoding("gpt-4o").encode("hello world") == [24912, 2375]


def test_a_chat_prompt_counts_its_contents_plus_the_chat_format(no_network):
    messages = [{"role": "system", "content": "You answer rules."}, {"role": "user", "content": "What is a beholder?"}]
    contents = sum(
        count_text_tokens("gpt-4o-mini", m["role"]) + count_text_tokens("gpt-4o-mini", m["content"]) for m in messages
    )

    assert count_chat_tokens("gpt-4o-mini", messages) == contents + 3 * len(messages) + 3


def test_special_token_text_in_a_question_is_counted_as_text():
    assert count_text_tokens("gpt-4o-mini", "<|endoftext|>") > 1


def test_an_unknown_model_has_no_tokenizer():
    with pytest.raises(ValueError, match="no tokenizer"):
        encoding_name("claude-3")
