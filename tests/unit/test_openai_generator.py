"""The chat request each kind of model gets: reasoning models a reasoning effort and no temperature."""

import openai

from dnd_rag.models.domain import Prompt
from dnd_rag.providers.openai_provider import OpenAIGenerator

PROMPT = Prompt("q", [], [{"role": "user", "content": "q"}])
CLIENT = openai.OpenAI(api_key="sk-unused", base_url="http://127.0.0.1:9/v1", max_retries=0)


def test_a_reasoning_model_gets_the_effort_and_the_completion_cap_and_no_temperature():
    body = OpenAIGenerator(CLIENT, "gpt-5-mini", reasoning=True, reasoning_effort="minimal").request(PROMPT, 300)

    assert body == {
        "model": "gpt-5-mini",
        "messages": PROMPT.messages,
        "max_completion_tokens": 300,
        "reasoning_effort": "minimal",
    }
    assert "max_tokens" not in body  # reasoning models refuse it: the cap covers reasoning and answer


def test_another_model_gets_no_reasoning_effort():
    body = OpenAIGenerator(CLIENT, "gpt-4.1-mini").request(PROMPT, 300)

    assert body == {
        "model": "gpt-4.1-mini",
        "messages": PROMPT.messages,
        "max_completion_tokens": 300,
        "temperature": 0.2,
    }
