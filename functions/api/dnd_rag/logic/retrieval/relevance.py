"""The relevance gate: no chat call for a question the corpus has nothing about.

When no retrieved passage is at least ``min_relevance`` similar to the question (the passages'
``score``: cosine similarity in [0, 1], comparable across collections), the query is answered with
``NOT_COVERED`` and no sources, at the embedding's cost only: a model given unrelated passages
would assemble a confident answer from them, and be paid for it. 0 switches the gate off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnd_rag.models.domain import Passage

NOT_COVERED = "The rules I have don't cover this."


@dataclass(frozen=True)
class RelevanceGate:
    min_relevance: float = 0.0  # 0: off

    def covers(self, passages: list[Passage]) -> bool:
        """True when the gate is off or some passage is similar enough to answer from."""
        return self.min_relevance <= 0 or any(p.score >= self.min_relevance for p in passages)

    def diagnostics(self, passages: list[Passage]) -> dict[str, Any]:
        best = max((p.score for p in passages), default=0.0)
        return {"stage": "relevance", "min_relevance": self.min_relevance, "best_score": round(best, 4)}
