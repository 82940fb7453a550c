"""The operator routes' request bodies and route-template matching (pure, no servers)."""

import pytest
from pydantic import ValidationError

from dnd_rag.handlers.error_responses import _methods_at
from dnd_rag.handlers.routes import ROUTE_METHODS
from dnd_rag.models.api import BudgetOverrideRequest, PauseRequest


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        (2.5, 2_500_000_000),
        (0.1, 100_000_000),
        (1e-9, 1),
        (1000, 1_000_000_000_000),
        (0.123456789, 123_456_789),
        (0.1234567899, 123_456_789),  # past the 9th decimal: rounded down, never up
    ],
)
def test_a_budget_is_taken_as_written_in_whole_nano_dollars(usd, nanos):
    assert BudgetOverrideRequest(daily_budget_usd=usd).nanos == nanos


@pytest.mark.parametrize("usd", [0, -0.5, 1000.000000001, 1e-10, 5e-324, "2.5", True, None])
def test_a_budget_out_of_range_or_not_a_number_is_refused(usd):
    with pytest.raises(ValidationError):
        BudgetOverrideRequest(daily_budget_usd=usd)


def test_a_pause_reason_is_trimmed_and_must_say_something():
    assert PauseRequest(reason="  deploy gone wrong \n").reason == "deploy gone wrong"
    for blank in ("", " \t\n"):
        with pytest.raises(ValidationError):
            PauseRequest(reason=blank)


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/admin/users/00000000-0000-4000-a000-00000000a11c/block", {"PUT", "DELETE"}),
        ("/api/admin/users/42/reset", {"POST"}),
        ("/api/admin/users/a/b/block", None),
        ("/api/admin/users//block", None),
        ("/api/admin/pause", {"POST"}),
        ("/api/admin/pausex", None),
    ],
)
def test_a_wrong_method_is_told_apart_from_an_unknown_path_on_templated_routes(path, methods):
    assert _methods_at(ROUTE_METHODS, path) == methods
