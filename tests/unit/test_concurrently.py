import threading
import time

import pytest

from dnd_rag.logic.common.concurrently import together


def test_both_results_in_order() -> None:
    assert together(lambda: 1, lambda: "two") == (1, "two")


def test_the_calls_overlap() -> None:
    # each call waits for the other to have started: run one after the other, this deadlocks
    barrier = threading.Barrier(2, timeout=5)

    def meet(value: str) -> str:
        barrier.wait()
        return value

    assert together(lambda: meet("a"), lambda: meet("b")) == ("a", "b")


def test_first_failure_raised_only_after_the_second_ended() -> None:
    ended: list[str] = []

    def slow() -> str:
        time.sleep(0.05)
        ended.append("second")
        return "done"

    def fail() -> None:
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        together(fail, slow)
    assert ended == ["second"]


def test_second_failure_is_raised() -> None:
    def fail() -> None:
        raise KeyError("second")

    with pytest.raises(KeyError):
        together(lambda: 1, fail)
