"""Values of the answer cache shared by the logic, its port and the DAL (no behaviour here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dnd_rag.models.domain import Passage
from dnd_rag.models.money import BudgetTotals

UNSTAMPED = "unstamped"  # the corpus version of a collection no ingest has stamped (built elsewhere)


@dataclass(frozen=True)
class CachedAnswer:
    """What a later identical question is answered with: never diagnostics, never usage or cost.

    ``sources`` are passages without their text (a response shows only where they come from);
    ``versions`` are the corpus versions, per collection, that the answer was computed against."""

    text: str
    sources: list[Passage]
    model: str
    versions: dict[str, str]
    stored_at: float
    expires_at: float


@dataclass(frozen=True)
class CacheRead:
    """One lookup's round trip: the entry (if any), the current corpus versions, the day's totals."""

    entry: CachedAnswer | None
    versions: dict[str, str] = field(default_factory=dict)
    totals: BudgetTotals | None = None
