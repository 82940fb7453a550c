"""How long alert work may take: each step's worst case, fixed by its client's timeouts and
attempts, and the bound they add up to (the arithmetic: notifier.py's docstring).

Constants only (no imports): the DAL's clients are configured from them, the notifier bounds a
request's alert work with them, and the settings check what is configurable against them.
"""

from __future__ import annotations

# DynamoDB for alerts (claims, "sent" marks, drops, the top-users read): a client of their own,
# one SDK attempt per call (dal/alerts/event_claims.py alert_store_client).
STORE_CONNECT_SECONDS = 0.25
STORE_READ_TIMEOUT_SECONDS = 0.75
STORE_CALL_SECONDS = STORE_CONNECT_SECONDS + STORE_READ_TIMEOUT_SECONDS
# A claim, mark or drop is sent again after an answer that may have been lost (a timeout, a 5xx,
# a throttle; each write is idempotent: named by its owner, or unconditional) while a whole call
# still fits in its budget: room for a call that timed out and one more, or several quick refusals.
STORE_WRITE_SENDS = 10  # at most
STORE_RESEND_PAUSE_SECONDS = 0.025  # the first pause at most (jittered), doubling up to STORE_RESEND_PAUSE_MAX_SECONDS
STORE_RESEND_PAUSE_MAX_SECONDS = 0.1
STORE_WRITE_SECONDS = 2 * STORE_CALL_SECONDS + STORE_RESEND_PAUSE_SECONDS
# Composing a budget event reads the day's user ledgers: one Query page per ~5,000 users of the day.
COMPOSE_SECONDS = STORE_CALL_SECONDS

# SES and SNS: one attempt (botocore ``total_max_attempts=1``; ``max_attempts`` counts retries).
AWS_CONNECT_SECONDS = 0.5
AWS_READ_TIMEOUT_SECONDS = 1.5
# The longest one delivery may take on any channel: SES's and SNS's connect + read, and the cap
# on the webhook's total timeout (ALERT_WEBHOOK_TIMEOUT_SECONDS).
DELIVER_SECONDS = AWS_CONNECT_SECONDS + AWS_READ_TIMEOUT_SECONDS

# How long a job may wait for a thread of the notifier's pool (idle threads pick it up at once).
PICKUP_SECONDS = 0.2
# What one ``emit`` may take at most: pick-up, claim, compose, deliver on the slowest channel, mark or drop.
MAX_SECONDS = PICKUP_SECONDS + STORE_WRITE_SECONDS + COMPOSE_SECONDS + DELIVER_SECONDS + STORE_WRITE_SECONDS
# A claim outlives the job that holds it by at least this (the containers' clocks may differ a little).
CLAIM_MARGIN_SECONDS = 2.0
MIN_CLAIM_SECONDS = MAX_SECONDS + CLAIM_MARGIN_SECONDS
