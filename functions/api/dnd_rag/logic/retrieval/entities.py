"""Comparison questions: the entities a question names, and passages chosen so each is represented.

"What is the difference between a red dragon and a white dragon?" names two entities. One query
with the whole question ranks passages by how well they match the *mix*; in a large book its top
k can fill up with one dragon. So retrieval also runs one query per entity (embedded in the same
paid call as the question) and guarantees each entity its best passages among the k.

Extraction is deliberately plain (no model): a comparison cue (between, vs, versus, compare,
difference, "which ... or") and the content-word runs on either side of and / or / vs / versus
(with / to / against after "compare"), plus lists "X, Y and Z". Questions without a cue name no
entities, so ordinary questions are retrieved exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dnd_rag.models.domain import Passage

MAX_ENTITIES = 4
MAX_ENTITY_WORDS = 4
MAX_PICKS_PER_ENTITY = 3

_APOSTROPHES = "'\u2019"
_WORD = re.compile(rf"[A-Za-z0-9][A-Za-z0-9{_APOSTROPHES}-]*|,")
_CUES = frozenset(
    """between vs versus compare compared comparing comparison difference differences differ differs
    contrast""".split()  # noqa: SIM905 - a word list reads better as text
)
_COMPARATIVES = frozenset(
    """more less better worse stronger weaker tougher deadlier bigger smaller faster slower harder
    easier""".split()  # noqa: SIM905 - a word list reads better as text
)
_COMPARE = frozenset({"compare", "compared", "comparing", "comparison", "contrast"})
_LIST_JOINERS = frozenset({"and", "or", "vs", "versus"})
_AFTER_COMPARE = frozenset({"with", "to", "against"})
_ARTICLES = frozenset({"a", "an", "the", "my", "your", "our", "their", "his", "her", "its"})
# Words that sit next to the entities in comparison questions without being one.
_NOT_ENTITY = frozenset(
    """a about after all also am an and any are as at be been before being between both but by can
    could did do does doing each for from had has have having he her here him his how i if in into
    is it its itself just me more most my no nor not of on once only or other our out over own same
    she should so some such than that the their them then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would
    you your yours many much what's whats which's who's how's tell explain describe show list give
    better worse stronger weaker tougher deadlier bigger smaller faster slower harder easier
    dangerous powerful similar similarities different differences difference differ differs compare
    compared comparing comparison contrast versus vs between against""".split()  # noqa: SIM905 - reads as text
)


def comparison_entities(question: str) -> list[str]:
    """The entities a comparison question names, in order (none for other questions)."""
    words = [w.lower().strip(_APOSTROPHES) for w in _WORD.findall(question)]
    if not _is_comparison(words):
        return []
    joiners = _LIST_JOINERS | (_AFTER_COMPARE if _COMPARE & set(words) else frozenset())
    found: list[list[str]] = []
    bare = True  # no article after a joiner: "red and white dragons" may share "dragons"
    for at, word in enumerate(words):
        if word not in joiners:
            continue
        left, right = _run_before(words, at), _run_after(words, at)
        if not left or not right:
            continue
        found.extend(_list_before(words, at - len(left) - _articles_before(words, at - len(left))))
        found.extend([left, right])
        bare = bare and words[at + 1] not in _ARTICLES
    entities = _unique(found)
    if bare:
        entities = _share_head_noun(entities)
    return [" ".join(entity) for entity in entities][:MAX_ENTITIES] if len(entities) >= 2 else []


def _is_comparison(words: list[str]) -> bool:
    if _CUES & set(words):
        return True
    return "or" in words and bool(({"which", "whether", "who"} | _COMPARATIVES) & set(words))


def _is_content(word: str) -> bool:
    return word != "," and word not in _NOT_ENTITY


def _run_before(words: list[str], at: int) -> list[str]:
    end = start = at
    while start > 0 and _is_content(words[start - 1]) and end - start < MAX_ENTITY_WORDS:
        start -= 1
    return words[start:end]


def _run_after(words: list[str], at: int) -> list[str]:
    start = at + 1
    while start < len(words) and words[start] in _ARTICLES:
        start += 1
    end = start
    while end < len(words) and _is_content(words[end]) and end - start < MAX_ENTITY_WORDS:
        end += 1
    return words[start:end]


def _articles_before(words: list[str], at: int) -> int:
    count = 0
    while at - count > 0 and words[at - count - 1] in _ARTICLES:
        count += 1
    return count


def _list_before(words: list[str], at: int) -> list[list[str]]:
    """``X, Y and Z``: walking back from Y over commas collects X (and more)."""
    items: list[list[str]] = []
    while at > 0 and words[at - 1] == ",":
        item = _run_before(words, at - 1)
        if not item:
            break
        items.insert(0, item)
        at = at - 1 - len(item) - _articles_before(words, at - 1 - len(item))
    return items


def _unique(entities: list[list[str]]) -> list[list[str]]:
    seen: dict[str, list[str]] = {}
    for entity in entities:
        seen.setdefault(" ".join(entity), entity)
    return list(seen.values())


def _share_head_noun(entities: list[list[str]]) -> list[list[str]]:
    """``red and white dragons``: the one-word entities before a longer one share its last word."""
    if len(entities) < 2 or len(entities[-1]) < 2:
        return entities
    head = entities[-1][-1]
    return [[*entity, head] if len(entity) == 1 and entity[-1] != head else entity for entity in entities]


@dataclass(frozen=True)
class Choice:
    passages: list[Passage]
    via: dict[tuple[str, str], str]  # passage key -> "question" or "entity: <name>"


def choose(question_hits: list[Passage], entity_hits: dict[str, list[Passage]], k: int) -> Choice:
    """``k`` passages: the question's best, then each entity's best (so any prefix of ``1 + n``
    passages covers every entity), then each entity's next picks and the question's other
    passages by score. Each entity is guaranteed ``max(1, k // 2n)`` (at most 3) of its own."""
    via: dict[tuple[str, str], str] = {}
    lead: list[Passage] = []
    forced: list[Passage] = []

    def take(passage: Passage, reason: str, into: list[Passage]) -> None:
        if passage.key not in via:
            via[passage.key] = reason
            into.append(passage)

    if question_hits:
        take(question_hits[0], "question", lead)
    picks = max(1, min(MAX_PICKS_PER_ENTITY, k // (2 * max(1, len(entity_hits)))))
    for entity, hits in entity_hits.items():
        if hits:
            take(hits[0], f"entity: {entity}", lead)
    for entity, hits in entity_hits.items():
        for passage in hits[1:picks]:
            take(passage, f"entity: {entity}", forced)
    rest: list[Passage] = []
    room = k - len(lead) - len(forced)
    for passage in question_hits[1:]:
        if room <= len(rest):
            break
        take(passage, "question", rest)
    tail = sorted([*forced, *rest], key=lambda p: -p.score)
    chosen = [*lead, *tail][:k]
    return Choice(chosen, {p.key: via[p.key] for p in chosen})
