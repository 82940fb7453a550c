"""The moderation step's rules: flagged questions refused, outages retried once then failed closed."""

import pytest

from dnd_rag.errors import AttemptError, ContentFlaggedError, UpstreamError
from dnd_rag.logic.common.clock import Deadline
from dnd_rag.logic.retrieval.moderation import QuestionModeration
from dnd_rag.models.domain import Moderation


class ScriptedModerator:
    """Answers (or fails) as scripted, one entry per call, and counts the calls."""

    model = "omni-moderation-latest"

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0

    def moderate(self, text, timeout_seconds):
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def check(moderator, seconds=10.0):
    waits = []
    QuestionModeration(moderator, 2.0, sleep=waits.append).check("a question", Deadline(seconds))
    return waits


def test_a_clean_question_passes_with_one_call():
    moderator = ScriptedModerator(Moderation(False))

    check(moderator)

    assert moderator.calls == 1


def test_a_flagged_question_is_refused_naming_its_categories():
    moderator = ScriptedModerator(Moderation(True, ["violence"]))

    with pytest.raises(ContentFlaggedError) as refused:
        check(moderator)

    assert refused.value.code == "content_flagged"
    assert refused.value.context == {"categories": ["violence"]}


def test_a_retryable_failure_is_retried_once_after_the_wait_asked_for():
    moderator = ScriptedModerator(
        AttemptError("openai moderation: 429", billable=False, retryable=True, retry_after=0.5), Moderation(False)
    )

    assert check(moderator) == [0.5]
    assert moderator.calls == 2


@pytest.mark.parametrize(
    "failures",
    [
        [AttemptError("openai moderation: 400", billable=False, retryable=False)],
        [AttemptError("openai moderation: 500", billable=True, retryable=True)] * 2,
    ],
)
def test_an_outage_fails_closed(failures):
    moderator = ScriptedModerator(*failures)

    with pytest.raises(UpstreamError):
        check(moderator)

    assert moderator.calls == len(failures)


def test_a_spent_deadline_asks_nothing_and_fails_closed():
    moderator = ScriptedModerator(Moderation(False))

    with pytest.raises(UpstreamError):
        check(moderator, seconds=-1)

    assert moderator.calls == 0
