"""Plain domain values passed between logic and providers (no HTTP, no SDK types)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, field_validator

from dnd_rag.models.money import TokenUsage

# What a user id may be (SPEC §3: ``{user_id}`` accepts any id the auth API issues). One rule, applied
# where an id enters the service: at sign-in (an id outside it is refused, 403 forbidden) and in the
# operator routes' paths (percent-decoded first; 400 otherwise), so every user who can sign in can be
# blocked and reset. 1-128 visible ASCII characters: the shapes identity providers issue (Auth0's
# ``auth0|abc123`` and ``google-oauth2|1234``, e-mail addresses, UUIDs, numbers, slugs), nothing that
# could hide in a log line or an audit entry (spaces, control characters, look-alike Unicode), and
# at most 128 bytes, so 2,000 blocked ids stay far under DynamoDB's 400 KB item limit.
USER_ID_MAX_CHARS = 128
USER_ID_RULE = re.compile(rf"[!-~]{{1,{USER_ID_MAX_CHARS}}}")
USER_ID_DESCRIPTION = f"1 to {USER_ID_MAX_CHARS} visible ASCII characters (no spaces)"


def is_valid_user_id(value: str) -> bool:
    return USER_ID_RULE.fullmatch(value) is not None


class User(BaseModel):
    """The caller, as the auth API describes them (``data`` of ``GET /auth/me``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    email: str | None = None
    plan: str | None = None
    role: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk of the corpus."""

    id: str
    text: str
    source: str
    score: float  # cosine similarity to the query that found it, clamped to [0, 1]
    title: str = ""  # the section (heading path) when the collection's metadata has one
    collection: str = ""  # the Chroma collection (often: the book) it came from
    page: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Ids are unique within a collection only."""
        return (self.collection, self.id)


@dataclass(frozen=True)
class Prompt:
    """What a generator is asked: the chat messages, and the question and passages they hold."""

    question: str
    passages: list[Passage]
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Embedding:
    vectors: list[list[float]]
    tokens: int
    model: str


@dataclass(frozen=True)
class Generation:
    answer: str
    prompt_tokens: int
    completion_tokens: int  # reasoning tokens included: OpenAI bills them as output
    model: str
    cached_tokens: int = 0  # prompt tokens served from OpenAI's prefix cache (billed at the cached price)
    reasoning_tokens: int = 0
    truncated: bool = False  # the completion cap cut the answer (finish_reason "length")
    errors: tuple[str, ...] = ()  # what the caller should know of a poor answer (an empty one not retried)

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


@dataclass
class Timings:
    """Milliseconds spent in each stage, reported only in debug diagnostics."""

    stages: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Moderation:
    """A moderation model's verdict on a question."""

    flagged: bool
    categories: list[str] = field(default_factory=list)  # the flagged ones, in the provider's names
