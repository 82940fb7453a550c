"""Burn-rate forecast: from today's spend curve, when the budget runs out at the current rate.

The curve is kept in the day's TOTAL item as 10-minute buckets (``s_<HHMM>``: nano-dollars
settled in the bucket that starts at HH:MM UTC), added in the same conditional writes that move
``spent``, so it costs no extra round trip. The rate is the spend of the last hour, or since the
first spend of the day when that is more recent, per hour; never measured over less than one
bucket, so the first query of the day does not extrapolate to a runaway rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dnd_rag.logic.common.clock import iso, month_end, next_midnight, utc_day
from dnd_rag.pricing import usd_for_display

BUCKET_SECONDS = 600
WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Forecast:
    rate_per_hour: int  # nano-dollars per hour at the current rate
    runs_out_at: float | None  # epoch seconds; None when the budget lasts until midnight (or nothing is spent)
    midnight: float  # the end of the day the forecast is about

    @property
    def hours_before_midnight(self) -> float:
        """How long before midnight the budget runs out (0 when it lasts): the alarm's metric."""
        if self.runs_out_at is None:
            return 0.0
        return round(max(0.0, self.midnight - self.runs_out_at) / 3600, 3)


def bucket_of(now: float) -> int:
    """The minute of the UTC day at which ``now``'s 10-minute bucket starts (0, 10, ... 1430)."""
    seconds_into_day = int(now) % 86_400
    return seconds_into_day // BUCKET_SECONDS * BUCKET_SECONDS // 60


def bucket_attribute(now: float) -> str:
    minute = bucket_of(now)
    return f"s_{minute // 60:02d}{minute % 60:02d}"


def rate_per_hour(buckets: Mapping[int, int], now: float) -> int:
    """Nano-dollars per hour spent over the last hour of ``buckets`` (today's), or since the day's
    first spend when that is more recent; never measured over less than one bucket."""
    day_start = next_midnight(now) - 86_400
    spending = sorted(minute for minute, amount in buckets.items() if amount > 0)
    if not spending:
        return 0
    first_spend = day_start + spending[0] * 60
    hour_ago = now - WINDOW_SECONDS
    window_start = day_start + bucket_of(hour_ago) * 60 if hour_ago >= day_start else day_start
    window_start = max(window_start, first_spend)  # whole buckets: the window starts where one does
    in_window = sum(amount for minute, amount in buckets.items() if day_start + minute * 60 >= window_start)
    elapsed = max(now - window_start, BUCKET_SECONDS)
    return int(max(0, in_window) * 3600 / elapsed)


def _run_out(rate: int, now: float, limit: int, spent: int, end: float) -> Forecast:
    if spent >= limit:
        return Forecast(rate, now, end)
    if rate <= 0:
        return Forecast(0, None, end)
    runs_out_at = now + (limit - spent) * 3600 / rate
    return Forecast(rate, runs_out_at if runs_out_at < end else None, end)


def forecast(buckets: Mapping[int, int], now: float, limit: int, spent: int) -> Forecast:
    """``buckets``: minute of the day a bucket starts -> nano-dollars spent in it (today only)."""
    midnight = next_midnight(now)
    if not any(amount > 0 for amount in buckets.values()):
        return Forecast(0, None, midnight)
    return _run_out(rate_per_hour(buckets, now), now, limit, spent, midnight)


def month_forecast(buckets: Mapping[int, int], now: float, budget: int, spent: int) -> Forecast:
    """When the month's ``budget`` runs out at today's current rate (``spent``: the month's so far);
    ``Forecast.midnight`` is then the month's end."""
    end = month_end(utc_day(now)[:7])
    if spent < budget and not any(amount > 0 for amount in buckets.values()):
        return Forecast(0, None, end)
    return _run_out(rate_per_hour(buckets, now), now, budget, spent, end)


def month_forecast_data(result: Forecast) -> dict[str, Any]:
    """The month's forecast as events and reports show it."""
    hours = round(max(0.0, result.midnight - result.runs_out_at) / 3600, 3) if result.runs_out_at is not None else 0.0
    return {
        "rate_usd_per_hour": usd_for_display(result.rate_per_hour),
        "runs_out_at": iso(result.runs_out_at) if result.runs_out_at is not None else None,
        "hours_before_month_end": hours,
    }


def forecast_data(result: Forecast) -> dict[str, Any]:
    """The forecast as events and reports show it."""
    return {
        "rate_usd_per_hour": usd_for_display(result.rate_per_hour),
        "runs_out_at": iso(result.runs_out_at) if result.runs_out_at is not None else None,
        "hours_before_midnight": result.hours_before_midnight,
    }
