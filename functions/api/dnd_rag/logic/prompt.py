"""The grounded prompt: numbered passages and an instruction to answer only from them."""

from __future__ import annotations

from dnd_rag.models.domain import Passage

SYSTEM_PROMPT = (
    "You answer questions about tabletop role-playing game rules. Use only the numbered passages "
    "provided. Quote exact numbers from them. Cite passages like [1]. If the passages do not "
    "contain the answer, say that you do not know."
)


def build_messages(question: str, passages: list[Passage]) -> list[dict[str, str]]:
    """Chat messages for the generator: the system rules, then the context and the question."""
    context = "\n\n".join(
        f"[{number}] (source: {passage.source})\n{passage.text}" for number, passage in enumerate(passages, start=1)
    )
    user = f"Passages:\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
