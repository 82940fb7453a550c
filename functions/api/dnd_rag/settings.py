"""Configuration, read from the environment once per container and validated at cold start.

Every variable of SPEC §5 lives here; nothing else reads ``os.environ``. An invalid value raises
``ConfigError`` naming the variable, so a misconfigured function fails at init instead of
silently defaulting.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dnd_rag.logic.alerts import timing
from dnd_rag.pricing import PriceBook, PriceFile, PriceFileError, UnknownModelError, load_prices

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
# Chroma's own rule for collection names: 3-512 characters of [A-Za-z0-9._-], alphanumeric at both ends.
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
DEFAULT_SOURCE_KEYS = ("source", "file_name", "filename", "file_path", "document")
DEFAULT_TITLE_KEYS = ("title", "section", "heading", "headings", "header")
DEFAULT_PAGE_KEYS = ("page", "page_number", "page_no", "page_label")
# The relevance gate's default threshold per embedding model, shipped as data (README "Relevance gate").
RELEVANCE_DEFAULTS = Path(__file__).with_name("relevance.json")
ModerationModel = Literal["omni-moderation-latest", "omni-moderation-2024-09-26"]


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


class PlanLimits(BaseModel):
    """Per-plan overrides of the user limits (entries of ``PLAN_LIMITS``)."""

    model_config = ConfigDict(extra="forbid")

    capacity: int | None = Field(default=None, ge=1)
    refill_rate: float | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, ge=1)
    daily_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)  # each user's dollar cap
    max_in_flight: int | None = Field(default=None, ge=1)
    max_k: int | None = Field(default=None, ge=1, le=50)  # passages a query may ask for (default plan: 20)


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# Every user has a dollar cap unless told otherwise: 5 % of the default daily budget, so no fewer
# than 20 accounts can spend a day's budget (with none, ~5 free accounts could, at k=50).
DEFAULT_USER_DAILY_BUDGET_USD = Decimal("0.05")


def _none_is_no_cap(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("none", "off"):
        return None
    return value


def _unset_is_none(value: Any) -> Any:
    """An optional budget: empty (a template parameter left blank), ``none`` or ``off`` is no budget."""
    if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
        return None
    return value


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


class Settings(BaseModel):
    """The validated configuration. Field aliases are the environment variable names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    stage: Literal["dev", "prod"] = Field(default="dev", alias="STAGE")
    auth_api_url: str = Field(alias="AUTH_API_URL", pattern=r"^https?://\S+$")
    auth_timeout_seconds: float = Field(default=5.0, alias="AUTH_TIMEOUT_SECONDS", gt=0, le=10)
    token_cache_ttl: int = Field(default=300, alias="TOKEN_CACHE_TTL", ge=0, le=3600)
    token_negative_cache_ttl: int = Field(default=30, alias="TOKEN_NEGATIVE_CACHE_TTL", ge=0, le=600)
    cors_origins: Annotated[list[str], BeforeValidator(_split_list)] = Field(default_factory=list, alias="CORS_ORIGINS")
    # true where API Gateway's CorsConfiguration writes the CORS headers (the deployed template, the
    # local gateways): the function then writes none and answers preflights 204. false (handlers
    # called directly): the function answers CORS itself, from CORS_ORIGINS.
    cors_by_gateway: bool = Field(default=False, alias="CORS_BY_GATEWAY")
    token_bucket_capacity: int = Field(default=15, alias="TOKEN_BUCKET_CAPACITY", ge=1)
    token_refill_rate: float = Field(default=1 / 60, alias="TOKEN_REFILL_RATE", gt=0)
    daily_user_request_limit: int = Field(default=30, alias="DAILY_USER_REQUEST_LIMIT", ge=1)
    plan_limits: Annotated[dict[str, PlanLimits], BeforeValidator(_parse_json)] = Field(
        default_factory=dict, alias="PLAN_LIMITS"
    )
    ip_auth_failure_capacity: int = Field(default=10, alias="IP_AUTH_FAILURE_CAPACITY", ge=1)
    ip_auth_failure_refill_rate: float = Field(default=0.1, alias="IP_AUTH_FAILURE_REFILL_RATE", gt=0)
    daily_budget_usd: Decimal = Field(default=Decimal("1.0"), alias="DAILY_BUDGET_USD", ge=0)
    # each user's own daily dollar cap (unset: DEFAULT_USER_DAILY_BUDGET_USD; "none": no cap) and
    # how many of a user's queries may run at once
    user_daily_budget_usd: Annotated[Decimal | None, BeforeValidator(_none_is_no_cap)] = Field(
        default=DEFAULT_USER_DAILY_BUDGET_USD, alias="USER_DAILY_BUDGET_USD", ge=0, allow_inf_nan=False
    )
    # the global budget of a UTC calendar month beside the daily one (unset, empty or "none": none)
    monthly_budget_usd: Annotated[Decimal | None, BeforeValidator(_unset_is_none)] = Field(
        default=None, alias="MONTHLY_BUDGET_USD", ge=0, allow_inf_nan=False
    )
    max_in_flight_per_user: int = Field(default=2, alias="MAX_IN_FLIGHT_PER_USER", ge=1, le=1000)
    alert_email: str | None = Field(default=None, alias="ALERT_EMAIL")
    alert_from: str | None = Field(default=None, alias="ALERT_FROM")
    # optional alert channels besides SES e-mail (README "Alerts")
    alert_sns_topic_arn: str | None = Field(
        default=None,
        alias="ALERT_SNS_TOPIC_ARN",
        pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$",
    )
    alert_webhook_url: str | None = Field(default=None, alias="ALERT_WEBHOOK_URL", pattern=r"^https?://\S+$")
    # the whole webhook call, cut when it is up: within the notifier's bound (logic/alerts/timing.py)
    alert_webhook_timeout_seconds: float = Field(default=2.0, alias="ALERT_WEBHOOK_TIMEOUT_SECONDS", gt=0)
    # how long a container's claim on delivering an alert lasts: a holder that died (a container
    # frozen for good) is replaced after it; longer than any delivery job may take
    alert_claim_seconds: float = Field(default=60.0, alias="ALERT_CLAIM_SECONDS", le=3600)
    openai_model: str = Field(default="gpt-4o-mini", alias="OPENAI_MODEL", min_length=1)
    # The model ladder: cheaper chat models tried, in order, when OPENAI_MODEL's standard query does
    # not fit what the budget leaves, before fewer passages or a smaller cap (logic/money/fitting.py).
    # Each must be in the price file and cheaper than the one before it (checked at cold start).
    openai_model_fallbacks: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=list, alias="OPENAI_MODEL_FALLBACKS"
    )
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL", pattern=r"^https?://\S+$")
    openai_timeout_seconds: float = Field(default=8.0, alias="OPENAI_TIMEOUT_SECONDS", gt=0, le=25)
    embedding_model: str = Field(default="text-embedding-3-small", alias="EMBEDDING_MODEL", min_length=1)
    # The reconciliation with OpenAI's own records (logic/operations/reconciliation.py): an admin key
    # with read-only usage access (local: OPENAI_ADMIN_KEY; deployed: the SSM SecureString named by
    # OPENAI_ADMIN_KEY_PARAMETER, read by the scheduled job only); neither set: the job does nothing.
    openai_admin_key: SecretStr | None = Field(default=None, alias="OPENAI_ADMIN_KEY")
    openai_admin_key_parameter: str | None = Field(
        default=None, alias="OPENAI_ADMIN_KEY_PARAMETER", pattern=r"^/[A-Za-z0-9_.\-/]+$"
    )
    openai_project_id: str | None = Field(default=None, alias="OPENAI_PROJECT_ID", pattern=r"^proj_[A-Za-z0-9]{1,64}$")
    # books below OpenAI's bill by more than this (per UTC day) raise reconciliation_drift
    reconciliation_tolerance_usd: Decimal = Field(
        default=Decimal("0.01"), alias="RECONCILIATION_TOLERANCE_USD", ge=0, le=1000, allow_inf_nan=False
    )
    reconciliation_lookback_days: int = Field(default=7, alias="RECONCILIATION_LOOKBACK_DAYS", ge=1, le=31)
    # The price file (pricing.py): the shipped prices.json unless PRICES_FILE names another file
    # (local) or PRICES_PARAMETER an SSM parameter holding one (deployed; dal/secrets.py reads it
    # into PRICES_JSON at cold start). One override at most.
    prices_file: str | None = Field(default=None, alias="PRICES_FILE")
    prices_json: str | None = Field(default=None, alias="PRICES_JSON", repr=False)
    # How hard a reasoning model (the price file's "reasoning": true) thinks before it answers; its
    # reasoning tokens are billed as output and come out of MAX_COMPLETION_TOKENS. Not sent to
    # other models. "minimal": a rules lookup needs little.
    reasoning_effort: Literal["minimal", "low", "medium", "high"] = Field(default="minimal", alias="REASONING_EFFORT")
    max_completion_tokens: int = Field(default=500, alias="MAX_COMPLETION_TOKENS", ge=1, le=16384)
    # the degradation floors: the least a query may use when the budget runs low (SPEC §4)
    budget_min_passages: int = Field(default=2, alias="BUDGET_MIN_PASSAGES", ge=1, le=50)
    budget_min_completion_tokens: int = Field(default=100, alias="BUDGET_MIN_COMPLETION_TOKENS", ge=1, le=16384)
    # how long a budget hold outlives its request before it is reclaimed as an orphan; keep it
    # above the Lambda timeout (29 s), or live requests get charged in full and corrected later
    budget_lease_seconds: int = Field(default=60, alias="BUDGET_LEASE_SECONDS", ge=1, le=3600)
    # the day's budget split over this many items (logic/money/shards.py): the ceiling of queries
    # per second grows with it; each shard holds at least BUDGET_MIN_SHARD_USD (a small budget uses
    # fewer shards) and at most BUDGET_HOLDS_PER_SHARD queries in flight (its item stays ~1 KB)
    budget_shards: int = Field(default=16, alias="BUDGET_SHARDS", ge=1, le=256)
    budget_holds_per_shard: int = Field(default=8, alias="BUDGET_HOLDS_PER_SHARD", ge=1, le=100)
    budget_min_shard_usd: Decimal = Field(default=Decimal("0.05"), alias="BUDGET_MIN_SHARD_USD", ge=0)
    # how old a container's copy of the operator controls (pause, blocks, budget override) may get
    # before a query re-reads it: every container sees an operator's change within this time
    controls_refresh_seconds: float = Field(default=4.0, alias="CONTROLS_REFRESH_SECONDS", ge=0, le=5)
    max_question_chars: int = Field(default=2000, alias="MAX_QUESTION_CHARS", ge=1, le=8000)
    # Seconds an answer stays in the answer cache (0 = off). A day: answers only go stale when the
    # corpus changes, and re-ingesting invalidates them anyway; the TTL bounds what the table keeps.
    answer_cache_ttl: int = Field(default=86_400, alias="ANSWER_CACHE_TTL", ge=0, le=30 * 86_400)
    chroma_host: str = Field(default="127.0.0.1", alias="CHROMA_HOST", min_length=1)
    chroma_port: int = Field(default=8060, alias="CHROMA_PORT", ge=1, le=65535)
    chroma_ssl: bool = Field(default=False, alias="CHROMA_SSL")
    chroma_timeout_seconds: float = Field(default=5.0, alias="CHROMA_TIMEOUT_SECONDS", gt=0, le=20)
    chroma_api_key: SecretStr | None = Field(default=None, alias="CHROMA_API_KEY")
    chroma_tenant: str = Field(default="default_tenant", alias="CHROMA_TENANT", min_length=1)
    chroma_database: str = Field(default="default_database", alias="CHROMA_DATABASE", min_length=1)
    chroma_collection: str = Field(default="dnd_rules", alias="CHROMA_COLLECTION", pattern=_COLLECTION.pattern)
    # Several collections (one per book is common) searched together; unset = CHROMA_COLLECTION alone.
    chroma_collections: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=list, alias="CHROMA_COLLECTIONS"
    )
    # Which metadata keys of collections built elsewhere hold a chunk's file, heading and page:
    # the first key present wins (defaults cover LangChain, LlamaIndex, Docling-style exports).
    chroma_source_keys: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(DEFAULT_SOURCE_KEYS), alias="CHROMA_SOURCE_KEYS", min_length=1
    )
    chroma_title_keys: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(DEFAULT_TITLE_KEYS), alias="CHROMA_TITLE_KEYS", min_length=1
    )
    chroma_page_keys: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(DEFAULT_PAGE_KEYS), alias="CHROMA_PAGE_KEYS", min_length=1
    )
    # Comparison questions ("red dragon vs white dragon"): one extra query per named entity.
    retrieval_entity_queries: bool = Field(default=True, alias="RETRIEVAL_ENTITY_QUERIES")
    # The relevance gate (logic/retrieval/relevance.py): unset = the embedding model's default in
    # relevance.json; 0 = off.
    min_relevance: float | None = Field(default=None, alias="MIN_RELEVANCE", ge=0, le=1, allow_inf_nan=False)
    # OpenAI's moderation model checking each question first (flagged: 400 content_flagged); unset/off = none.
    moderation: Annotated[ModerationModel | None, BeforeValidator(_none_is_no_cap)] = Field(
        default=None, alias="MODERATION"
    )
    table_name: str = Field(alias="TABLE_NAME", pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    llm_provider: Literal["openai", "offline"] = Field(default="offline", alias="LLM_PROVIDER")
    # The local stack's clock (``make dev`` with LOCAL_CLOCK_START): seconds the stack adds to the
    # wall clock in every process, computed once when it starts. Local only: refused in prod.
    local_clock_start: str | None = Field(default=None, alias="LOCAL_CLOCK_START")
    # json: CloudWatch's JSON logs and EMF metrics; human: make dev's terminal (observability.py)
    log_format: Literal["json", "human"] = Field(default="json", alias="LOG_FORMAT")
    local_clock_offset_seconds: float = Field(default=0.0, alias="LOCAL_CLOCK_OFFSET_SECONDS", allow_inf_nan=False)
    embedding_provider: Literal["openai", "offline"] = Field(default="offline", alias="EMBEDDING_PROVIDER")

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com (no path, no slash)")
        return origins

    @field_validator("alert_webhook_timeout_seconds")
    @classmethod
    def _webhook_fits_the_alert_bound(cls, seconds: float) -> float:
        if seconds > timing.DELIVER_SECONDS:
            raise ValueError(
                f"must be at most {timing.DELIVER_SECONDS:g} s: a request waits for its alert deliveries "
                f"before it returns (Lambda freezes the container then), within {timing.MAX_SECONDS:g} s in all"
            )
        return seconds

    @field_validator("alert_claim_seconds")
    @classmethod
    def _claims_outlive_their_jobs(cls, seconds: float) -> float:
        if seconds < timing.MIN_CLAIM_SECONDS:
            raise ValueError(
                f"must be at least {timing.MIN_CLAIM_SECONDS:g} s: a claim must outlive the delivery job "
                f"holding it (up to {timing.MAX_SECONDS:g} s), or a second container delivers the event too"
            )
        return seconds

    @field_validator("chroma_collections")
    @classmethod
    def _collection_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _COLLECTION.match(name):
                raise ValueError(f"{name!r} is not a Chroma collection name (3-512 of A-Z a-z 0-9 . _ -)")
        return list(dict.fromkeys(names))

    @property
    def collections(self) -> list[str]:
        """The collections queries search: CHROMA_COLLECTIONS, else CHROMA_COLLECTION alone."""
        return self.chroma_collections or [self.chroma_collection]

    @model_validator(mode="after")
    def _prod_auth_is_https(self) -> Settings:
        # bearer tokens are sent to the auth API: in production never in clear text (SPEC §4)
        if self.stage == "prod" and not self.auth_api_url.lower().startswith("https://"):
            raise ValueError("AUTH_API_URL must be an https:// URL when STAGE is prod")
        # alert events name users and operator actions: in production never in clear text either
        if (
            self.stage == "prod"
            and self.alert_webhook_url
            and not self.alert_webhook_url.lower().startswith("https://")
        ):
            raise ValueError("ALERT_WEBHOOK_URL must be an https:// URL when STAGE is prod")
        return self

    @model_validator(mode="after")
    def _local_only_settings_not_in_prod(self) -> Settings:
        # a shifted clock decides which day a dollar is charged to: never outside the local stack
        if self.stage == "prod" and (self.local_clock_start is not None or self.local_clock_offset_seconds):
            variable = "LOCAL_CLOCK_START" if self.local_clock_start is not None else "LOCAL_CLOCK_OFFSET_SECONDS"
            raise ValueError(f"{variable} is for the local stack only; unset it when STAGE is prod")
        if self.stage == "prod" and self.log_format != "json":
            raise ValueError("LOG_FORMAT must be json when STAGE is prod (CloudWatch reads JSON logs and EMF metrics)")
        return self

    @model_validator(mode="after")
    def _prod_sends_nothing_in_clear_text(self) -> Settings:
        """In production no secret travels and no origin is trusted over plain http (SPEC §5)."""
        if self.stage != "prod":
            return self
        if self.chroma_api_key is not None and not self.chroma_ssl:
            raise ValueError(
                "CHROMA_SSL must be true when CHROMA_API_KEY is set and STAGE is prod "
                "(the key would travel in clear text)"
            )
        if self.openai_base_url and not self.openai_base_url.lower().startswith("https://"):
            raise ValueError(
                "OPENAI_BASE_URL must be an https:// URL when STAGE is prod (the API key would travel in clear text)"
            )
        plain = [origin for origin in self.cors_origins if not origin.lower().startswith("https://")]
        if plain:
            raise ValueError(
                f"CORS_ORIGINS must list https:// origins only when STAGE is prod ({len(plain)} of them are not)"
            )
        return self

    @model_validator(mode="after")
    def _providers_have_keys(self) -> Settings:
        uses_openai = "openai" in (self.llm_provider, self.embedding_provider)
        if uses_openai and self.openai_api_key is None:
            raise ValueError("OPENAI_API_KEY is required when LLM_PROVIDER or EMBEDDING_PROVIDER is openai")
        return self

    @model_validator(mode="after")
    def _moderation_needs_openai(self) -> Settings:
        if self.moderation is not None and self.llm_provider != "openai":
            raise ValueError(
                "MODERATION needs OpenAI (LLM_PROVIDER=openai, OPENAI_API_KEY set): the offline stack has no "
                "moderation model; unset MODERATION"
            )
        return self

    @model_validator(mode="after")
    def _one_price_override(self) -> Settings:
        if self.prices_file is not None and self.prices_json is not None:
            raise ValueError("PRICES_FILE and PRICES_PARAMETER are both set; keep one price override")
        return self

    @property
    def prices(self) -> PriceFile:
        """The price file in effect (read and validated once per container)."""
        return load_prices(self.prices_file, self.prices_json)

    @property
    def price_book(self) -> PriceBook:
        return PriceBook.for_models(self.openai_model, self.embedding_model, self.prices)

    def min_relevance_for(self, embedding_model: str) -> float:
        """The relevance gate's threshold for ``embedding_model``: MIN_RELEVANCE, else the shipped
        default for that model, else 0 (off: a model nobody calibrated is not gated)."""
        if self.min_relevance is not None:
            return self.min_relevance
        return relevance_defaults().get(embedding_model, 0.0)

    @property
    def reasoning_model(self) -> bool:
        """The chat model bills hidden reasoning tokens (the price file says so)."""
        return self.price_book.chat.reasoning

    @property
    def chat_models(self) -> list[str]:
        """The model ladder: OPENAI_MODEL, then each of OPENAI_MODEL_FALLBACKS (cheapest last)."""
        return [self.openai_model, *self.openai_model_fallbacks]

    def price_book_for(self, chat_model: str) -> PriceBook:
        """The prices of one model of the ladder (with the configured embedding model)."""
        return PriceBook.for_models(chat_model, self.embedding_model, self.prices)


def ladder_problem(settings: Settings) -> str | None:
    """Why OPENAI_MODEL_FALLBACKS cannot be a ladder of the price file in effect, or None.

    Each fallback must be priced and cheaper than the model before it: its input and output prices
    each at most that model's, and not both the same (so a fallback's standard query never costs
    more than the one before it, for the same tokens)."""
    prices = settings.prices
    previous = settings.openai_model
    for model in settings.openai_model_fallbacks:
        if model not in prices.chat:
            return (
                f"OPENAI_MODEL_FALLBACKS: no price for {model!r} in price file {prices.version}; "
                f"known: {', '.join(sorted(prices.chat))}"
            )
        before, after = prices.chat[previous], prices.chat[model]
        no_dearer = after.input <= before.input and after.output <= before.output
        if not no_dearer or (after.input, after.output) == (before.input, before.output):
            return (
                f"OPENAI_MODEL_FALLBACKS: {model!r} (${after.input} input, ${after.output} output per 1M tokens) "
                f"is not cheaper than {previous!r} before it (${before.input}, ${before.output}); "
                "list cheaper models only, cheapest last"
            )
        previous = model
    return None


@cache
def relevance_defaults() -> dict[str, float]:
    """The shipped thresholds per embedding model (relevance.json), each in [0, 1]."""
    models = json.loads(RELEVANCE_DEFAULTS.read_text(encoding="utf-8"))["models"]
    defaults = {name: float(entry["min_relevance"]) for name, entry in models.items()}
    if not all(0 <= value <= 1 for value in defaults.values()):
        raise ConfigError(f"{RELEVANCE_DEFAULTS.name}: every min_relevance must be in [0, 1]")
    return defaults


def _defaults_for_providers(env: dict[str, str]) -> None:
    """Offline providers unless an OpenAI key is configured (SPEC §6)."""
    default = "openai" if env.get("OPENAI_API_KEY") else "offline"
    env.setdefault("LLM_PROVIDER", default)
    env.setdefault("EMBEDDING_PROVIDER", default)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate the environment; raise ``ConfigError`` naming every bad variable."""
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items() if value != ""}
    _defaults_for_providers(env)
    try:
        settings = Settings.model_validate(env)
        settings.price_book  # noqa: B018 - unknown models must fail at cold start, not at the first query
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except (UnknownModelError, PriceFileError) as exc:
        raise ConfigError(str(exc)) from None
    problem = ladder_problem(settings)
    if problem is not None:
        raise ConfigError(problem)
    if settings.llm_provider == "openai":  # a model a price override adds must also be countable
        from dnd_rag.providers.tokenizer import encoding_name

        for variable, model in (
            ("OPENAI_MODEL", settings.openai_model),
            *(("OPENAI_MODEL_FALLBACKS", fallback) for fallback in settings.openai_model_fallbacks),
        ):
            try:
                encoding_name(model)
            except ValueError as exc:
                raise ConfigError(f"{variable}: {exc} (holds are priced on exact token counts)") from None
    return settings


def _describe(exc: ValidationError) -> str:
    aliases = {name: field.alias or name for name, field in Settings.model_fields.items()}
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        variable = aliases.get(str(location[0]), str(location[0])) if location else "configuration"
        problems.append(f"{variable}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)
