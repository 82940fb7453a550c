"""``Idempotency-Key`` on POST /api/query: a retried request gets the first answer again and is
not charged again (Powertools idempotency). The key is scoped to the caller, and reusing it for
a different request body is refused rather than answered with the wrong result."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from dnd_rag.errors import (
    IdempotencyKeyReusedError,
    RequestInProgressError,
    StoreUnavailableError,
)

HEADER = "idempotency-key"
KEY_PATTERN = re.compile(r"^[!-~]{1,255}$")  # 1 to 255 visible ASCII characters
KEY_DESCRIPTION = "Optional. Retrying with the same key returns the first answer and is not charged again."
REMEMBER_SECONDS = 24 * 3600

CONFIG = IdempotencyConfig(
    event_key_jmespath="[user, key]",
    payload_validation_jmespath="request",
    expires_after_seconds=REMEMBER_SECONDS,
    hash_function="sha256",
)


def answer_once(
    store: BasePersistenceLayer,
    context: LambdaContext,
    user_id: str,
    key: str,
    request: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """``compute()`` the first time (user, key) is seen; its stored result on every retry."""
    CONFIG.register_lambda_context(context)

    @idempotent_function(data_keyword_argument="call", persistence_store=store, config=CONFIG)
    def answer(call: dict[str, Any]) -> dict[str, Any]:
        return compute()

    try:
        return answer(call={"user": user_id, "key": key, "request": request})
    except IdempotencyValidationError:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was already used for a different request. Use a new key."
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise RequestInProgressError(
            "A request with this Idempotency-Key is still being answered.", retry_after=1
        ) from None
    except IdempotencyPersistenceLayerError:
        raise StoreUnavailableError(
            "The service is temporarily unavailable. Please retry shortly.",
            retry_after=5,
            reason="idempotency store unavailable",
        ) from None
