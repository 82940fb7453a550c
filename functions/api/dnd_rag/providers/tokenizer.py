"""Exact prompt token counts for OpenAI chat models, with no download at run time.

tiktoken fetches its encodings from the network on first use unless they are in its cache
directory. The two encodings our priced models use ship in ``tokenizer_data/`` under the names
tiktoken's cache gives them (SHA-1 of the official URL); tiktoken verifies each file's SHA-256
against the hash it expects before using it, so a damaged copy fails loudly instead of miscounting:
  fb374d41...  o200k_base.tiktoken   (gpt-4o, gpt-4.1 and gpt-5 families)
  9b5ad71b...  cl100k_base.tiktoken  (gpt-4, gpt-4-turbo, gpt-3.5-turbo)

Chat formatting adds tokens beyond the contents: 3 per message (plus its role) and 3 that prime
the reply (OpenAI's published counting for these models).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import tiktoken

ENCODINGS_DIR = Path(__file__).resolve().parent.parent / "tokenizer_data"
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
# First matching prefix wins: the gpt-4o, gpt-4.1 and gpt-5 families before plain gpt-4.
ENCODING_BY_MODEL_PREFIX = {
    "gpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
}


def encoding_name(model: str) -> str:
    for prefix, name in ENCODING_BY_MODEL_PREFIX.items():
        if model.startswith(prefix):
            return name
    raise ValueError(f"no tokenizer known for model {model!r}")


@cache
def encoding(model: str) -> tiktoken.Encoding:
    """The model's encoding, read from the shipped files (never the network)."""
    os.environ["TIKTOKEN_CACHE_DIR"] = str(ENCODINGS_DIR)
    return tiktoken.get_encoding(encoding_name(model))


def count_text_tokens(model: str, text: str) -> int:
    return len(encoding(model).encode(text, disallowed_special=()))


def count_chat_tokens(model: str, messages: list[dict[str, str]]) -> int:
    """The prompt tokens OpenAI bills for ``messages`` sent to ``model``."""
    enc = encoding(model)
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += sum(len(enc.encode(value, disallowed_special=())) for value in message.values())
    return total
