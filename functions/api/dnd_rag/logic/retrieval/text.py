"""Text primitives shared by the offline providers and the ingester: tokens, terms, sentences.

The offline models count the tokens they actually process with ``count_tokens``, so the
usage they report is honest for what they did (it is not OpenAI's tokenizer).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"[0-9][0-9,]*[0-9]|\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")

STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been before being between both but by can
    could did do does doing each for from had has have having he her here him his how i if in into
    is it its itself just me more most my no nor not of on once only or other our out over own same
    she should so some such than that the their them then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would
    you your yours many much""".split()  # noqa: SIM905 - a word list reads better as text
)


def count_tokens(text: str) -> int:
    """Words and punctuation marks: the unit the offline models read and write."""
    return len(_TOKEN.findall(text))


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Content words, lower-cased and lightly stemmed; numbers keep their digits (``250,001`` → ``250001``)."""
    found = []
    for raw in _WORD.findall(text.lower()):
        word = raw.replace(",", "")
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        found.append(_stem(word))
    return found


def sentences(text: str) -> list[str]:
    """Split prose into sentences and keep table rows and list items whole."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if any(line.startswith(("|", "-", "*")) or re.match(r"^\d+\.", line) for line in lines):
            pieces.extend(line for line in lines if not re.fullmatch(r"[|:\- ]+", line))
            continue
        paragraph = " ".join(lines)
        pieces.extend(part.strip() for part in _SENTENCE_END.split(paragraph) if part.strip())
    return [piece for piece in pieces if not piece.startswith("#")]
