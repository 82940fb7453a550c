"""``make reconcile``: the scheduled reconciliation with OpenAI's records, run by hand against the
local stack's settings, printing per day and model what the books hold, what OpenAI billed, the
drift and the safety margin.

    python -m infra.scripts.reconcile                    # the finished days the job would do, then today so far
    python -m infra.scripts.reconcile --day 2026-11-22   # these days, again (repeatable)

Today (or any day given that has not ended) is shown *so far*: compared the same way, but not
stored, not alerted on, and not counted in the exit status — its queries between their paid call
and their settle would show as drift that is not there. A run of queries against the fake OpenAI
can so be checked at once, without waiting for midnight.

It runs the same code as the scheduled task (handlers/scheduled.py): the books in ``make dev``'s
table in its local emulator (LOCAL_AWS_PORT, TABLE_NAME), OpenAI's organization usage and costs API
at ``OPENAI_BASE_URL`` (the real API by default, or the fake server's) with ``OPENAI_ADMIN_KEY``, all
from the environment over ``.env``. Results are stored as the job stores them (GET
/api/admin/reconciliation shows them) and a drift beyond ``RECONCILIATION_TOLERANCE_USD`` raises
``reconciliation_drift`` on the configured channels, once per day. Nothing reaches AWS: a
non-local AWS_ENDPOINT_URL is refused (infra/local/aws_guard.py). Exit status 1 when a day drifts.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import TextIO

from dnd_rag.container import Container
from dnd_rag.errors import ServiceError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.operations.reconciliation import DayReconciliation
from dnd_rag.pricing import usd_exact
from dnd_rag.settings import load_settings
from infra.local.aws_guard import ENDPOINT, LOCAL_CREDENTIALS, PROFILE_VARIABLES, use_local_aws
from infra.local.clock import clock_environment
from infra.local.stack import local_environment


def report(results: list[DayReconciliation], out: TextIO, so_far: bool = False) -> None:
    """One block per day: its models (books, billed, difference, tokens), then its verdict."""
    for result in results:
        if so_far:
            state = "so far: the day has not ended; not stored, no alert"
        else:
            state = f"reconciled {'final' if result.final else 'provisional: re-run until 48 h after'}"
        print(f"{result.day}  ({state})", file=out)
        print(
            f"  {'model':<28} {'books USD':>14} {'billed USD':>14} {'books-billed':>14} "
            f"{'in tok books/billed':>22} {'out tok books/billed':>22}",
            file=out,
        )
        for line in result.models:
            books, billed = line.books, line.billed
            print(
                f"  {line.model:<28} {usd_exact(books.cost):>14} {usd_exact(billed.cost):>14} "
                f"{usd_exact(line.difference):>14} {f'{books.input_tokens}/{billed.input_tokens}':>22} "
                f"{f'{books.output_tokens}/{billed.output_tokens}':>22}",
                file=out,
            )
        verdict = "DRIFT" if result.drifting else "ok"
        print(
            f"  day: books {usd_exact(result.books)} billed {usd_exact(result.billed)} "
            f"drift {usd_exact(result.drift)} safety margin {usd_exact(result.safety_margin)} "
            f"(tolerance {usd_exact(result.tolerance)}): {verdict}"
            + (", reconciliation_drift sent" if result.alert_sent else ""),
            file=out,
        )


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", action="append", type=date.fromisoformat, help="a finished UTC day (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    env = local_environment(dict(os.environ))
    clock_environment(env)  # LOCAL_CLOCK_START: the stack's clock (from now on), as make dev gives it
    use_local_aws(env, "reconcile")
    for name in PROFILE_VARIABLES:
        os.environ.pop(name, None)
    for name in (ENDPOINT, *LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION"):
        os.environ[name] = env[name]
    container = Container(load_settings(env))
    reconciler = container.reconciler()
    if reconciler is None:
        print(
            "reconcile: no OpenAI admin key: set OPENAI_ADMIN_KEY (in .env) to an admin key with read-only "
            'usage access (README "Reconciliation")',
            file=sys.stderr,
        )
        return 2
    today = utc_day(container.clock())
    asked = [day.isoformat() for day in args.day] if args.day else None
    try:
        if asked is None:
            results, so_far = reconciler.run(), [reconciler.preview(today)]
        else:
            results = [reconciler.reconcile(day) for day in asked if day < today]
            so_far = [reconciler.preview(day) for day in asked if day >= today]
    except (ServiceError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        print(f"reconcile: {reason}", file=sys.stderr)
        return 2
    report(results, out)
    report(so_far, out, so_far=True)
    return 1 if any(result.drifting for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
