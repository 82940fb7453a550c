"""Optional content moderation (``MODERATION``): the question is checked first, with OpenAI's
moderation model (free: nothing goes on the books).

It runs once the query is admitted and before any money is held. A flagged question answers 400
``content_flagged``: like every rejection it gives the admission back and pays nothing (SPEC §3
"what a rejection costs"). It fails closed: when the moderation model cannot answer (after a retry,
inside the deadline), the query answers 502 ``upstream_error`` instead of going unchecked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dnd_rag.errors import AttemptError, ContentFlaggedError, UpstreamError
from dnd_rag.logic.common.clock import Deadline
from dnd_rag.logic.ports import Moderator
from dnd_rag.observability import logger, metrics

ATTEMPTS = 2
UNAVAILABLE = "Content moderation is unavailable right now. Please retry."


class QuestionModeration:
    def __init__(
        self, moderator: Moderator, timeout_seconds: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._moderator = moderator
        self._timeout = timeout_seconds
        self._sleep = sleep

    def check(self, question: str, deadline: Deadline) -> None:
        """Return when the question may be answered; raise ContentFlaggedError or UpstreamError."""
        for attempt in range(1, ATTEMPTS + 1):
            timeout = min(self._timeout, deadline.remaining())
            if timeout <= 0:
                break
            try:
                verdict = self._moderator.moderate(question, timeout)
            except AttemptError as failure:
                logger.warning("moderation attempt failed", extra={"attempt": attempt, "reason": failure.reason})
                wait = failure.retry_after or 0.0
                if not failure.retryable or attempt == ATTEMPTS or wait >= deadline.remaining():
                    raise UpstreamError(UNAVAILABLE, reason=failure.reason) from None
                self._sleep(wait)
                continue
            if verdict.flagged:
                metrics.add_metric(name="QueryFlagged", unit="Count", value=1)
                raise ContentFlaggedError(
                    "The question was flagged by content moderation and was not answered.",
                    reason=f"moderation: {', '.join(verdict.categories) or 'flagged'}",
                    categories=verdict.categories,
                )
            return
        raise UpstreamError(UNAVAILABLE, reason="moderation: deadline")
