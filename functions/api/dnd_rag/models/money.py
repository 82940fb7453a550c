"""Values of the daily budget shared by the logic, its ports and the DAL (no behaviour here).

Every amount is an integer of nano-dollars (1e-9 USD).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one request used, as OpenAI reports them.

    ``cached_tokens`` are the prompt tokens OpenAI's prefix cache served (inside ``prompt_tokens``,
    billed at the cached-input price); ``reasoning_tokens`` a reasoning model's hidden tokens
    (inside ``completion_tokens``, billed as output). A hold counts neither: it is priced as if
    no prompt token were cached.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def cached_prompt_tokens(self) -> int:
        """The prompt tokens billed at the cached price (never more than the prompt)."""
        return max(0, min(self.cached_tokens, self.prompt_tokens))

    @property
    def uncached_prompt_tokens(self) -> int:
        """The prompt tokens billed at the full input price."""
        return self.prompt_tokens - self.cached_prompt_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.embedding_tokens + other.embedding_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True)
class HoldEntry:
    """One open reservation as the day's total item records it."""

    amount: int
    lease_until: float
    user_id: str
    model: str
    shard: int = 0  # the shard of the day's budget it holds money on


@dataclass(frozen=True)
class BudgetTotals:
    """One day's counters as the store returned them.

    ``committed`` = ``spent`` + every open hold. ``holds`` are the open reservations by id and
    ``orphans`` the ids of reservations charged in full after their lease ended (kept for a grace
    period so that a late settle can still correct them down). ``day`` is the UTC day they belong
    to: every decision made from them is made against that day's budget and alerts. ``shard`` is
    the one shard of the day's budget they describe, or None for the whole day (every shard summed).
    ``open_holds`` counts the holds (a shard carries at most a configured number)."""

    day: str
    spent: int
    committed: int
    shard: int | None = None
    open_holds: int = 0
    alerts_sent: dict[int, int] = field(default_factory=dict)  # threshold -> the budget it was sent for
    holds: dict[str, HoldEntry] = field(default_factory=dict)
    orphans: dict[str, float] = field(default_factory=dict)  # id -> end of grace (epoch seconds)
    spend_curve: dict[int, int] = field(default_factory=dict)  # minute a 10-min bucket starts -> nanos

    @property
    def in_flight(self) -> int:
        return self.committed - self.spent


@dataclass(frozen=True)
class Charge:
    """What one request really cost (or could have been billed), for the total and the ledgers."""

    user_id: str
    model: str
    usage: TokenUsage
    cost: int


@dataclass(frozen=True)
class UserHoldEntry:
    """One open reservation as the user's ledger item records it (``uh_<id>``)."""

    amount: int
    lease_until: float
    model: str


@dataclass(frozen=True)
class UserTotals:
    """A user's day against the user's own limits, as the store returned it.

    ``committed`` = the user's spend counted against the cap + every open hold of the user;
    ``in_flight`` = how many holds are open (one per running query)."""

    committed: int = 0
    in_flight: int = 0
    holds: dict[str, UserHoldEntry] = field(default_factory=dict)

    @property
    def spent(self) -> int:
        return self.committed - sum(hold.amount for hold in self.holds.values())


# The day's alert thresholds, in percent of its budget: the budget decides when a threshold *can*
# have been crossed (logic/money/budget.py), the alerts decide whether it was (logic/alerts).
WARNING_PERCENT = 80
EXHAUSTED_PERCENT = 100
