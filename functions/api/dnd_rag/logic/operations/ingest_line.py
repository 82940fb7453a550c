"""The corpus ingester's line on the books (dal/money/ingest_books.py): what the spend export and
the reconciliation read is the day's budget books plus the ingest's embeddings, so every dollar
OpenAI bills is somewhere on the books, while the query budget counts queries only."""

from __future__ import annotations

from typing import Protocol

from dnd_rag.logic.ports import DayBooks, LedgerRow, SpendBooks

# The spend export's user row for the ingester: not a user id (those have no spaces, models/domain.py)
INGEST_ROW = "(corpus ingest)"


class IngestLine(Protocol):
    def ingest_cost(self, day: str) -> int: ...

    def ingest_models(self, day: str) -> list[LedgerRow]: ...


class ModelLedgers(Protocol):
    def models(self, day: str) -> list[LedgerRow]: ...


class BooksWithIngest:
    """SpendBooks (and the reconciliation's per-model books) with the ingest line added."""

    def __init__(self, books: SpendBooks, models: ModelLedgers, ingest: IngestLine) -> None:
        self._books = books
        self._models = models
        self._ingest = ingest

    def day_books(self, day: str) -> DayBooks:
        books = self._books.day_books(day)
        rows = self._ingest.ingest_models(day)
        if not rows:
            return books
        models = dict(books.models)
        for row in rows:
            models[row.name] = models.get(row.name, 0) + row.cost
        return DayBooks(day, books.spent + sum(row.cost for row in rows), models)

    def user_costs(self, day: str) -> dict[str, int]:
        costs = self._books.user_costs(day)
        ingest = self._ingest.ingest_cost(day)
        return {**costs, INGEST_ROW: ingest} if ingest else costs

    def models(self, day: str) -> list[LedgerRow]:
        return self._models.models(day) + self._ingest.ingest_models(day)
