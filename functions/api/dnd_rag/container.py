"""Builds the service's collaborators once per container, from validated settings.

Clients are created lazily (first use) and then reused by every request the container serves;
the heavy SDKs are imported here, on first use, never per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dnd_rag.logic.alerts.budget_alerts import BudgetAlerts, MailChannel
from dnd_rag.logic.alerts.events import OperatorEvents, QuotaEvents
from dnd_rag.logic.alerts.month_alerts import MonthAlerts
from dnd_rag.logic.alerts.notifier import Notifier
from dnd_rag.logic.alerts.pending import PendingAlerts
from dnd_rag.logic.alerts.timing import COMPOSE_SECONDS
from dnd_rag.logic.auth.authenticator import Authenticator
from dnd_rag.logic.auth.ip_guard import FailedAuthGuard
from dnd_rag.logic.limits.plans import PlanBook
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter
from dnd_rag.logic.limits.replays import ReplayGate
from dnd_rag.logic.money.budget import Budget
from dnd_rag.logic.money.fitting import Fitter, Floors, Ladder
from dnd_rag.logic.money.spending import PaidCalls
from dnd_rag.logic.money.user_budget import UserBudget
from dnd_rag.logic.money.wallet import Wallet
from dnd_rag.logic.operations.controls import ControlsCache
from dnd_rag.logic.operations.ingest_line import BooksWithIngest
from dnd_rag.logic.operations.operator import OperatorService
from dnd_rag.logic.operations.reconciliation import Reconciler, ReconciliationResults
from dnd_rag.logic.operations.spend import SpendExport
from dnd_rag.logic.operations.usage import UsageService
from dnd_rag.logic.ports import AlertChannel, Embedder, Generator, UserSpendReset
from dnd_rag.logic.query import QueryService
from dnd_rag.logic.retrieval.answer_cache import AnswerCache, CacheScope
from dnd_rag.logic.retrieval.moderation import QuestionModeration
from dnd_rag.logic.retrieval.prompt import PROMPT_VERSION
from dnd_rag.logic.retrieval.rag import RagService
from dnd_rag.logic.retrieval.relevance import RelevanceGate
from dnd_rag.models.controls import AuditEntry
from dnd_rag.models.limits import UserLimits
from dnd_rag.pricing import PriceBook, usd_to_nanos
from dnd_rag.settings import Settings

if TYPE_CHECKING:
    from dnd_rag.dal.money.budget import DynamoLedgers
    from dnd_rag.dal.money.ingest_books import DynamoIngestBooks
    from dnd_rag.dal.operations.controls import DynamoControlStore
    from dnd_rag.dal.operations.reconciliation import DynamoReconciliationStore
    from dnd_rag.dal.retrieval.answer_cache import DynamoCorpusVersions

# Failed sign-ins per address are limited by the bucket alone; the daily cap is only a backstop.
IP_DAILY_FAILURES = 10_000


def shifted_clock(offset_seconds: float) -> Callable[[], float]:
    """``time.time`` itself, or ``offset_seconds`` ahead of it (the local stack's LOCAL_CLOCK_START)."""
    if not offset_seconds:
        return time.time
    return lambda: time.time() + offset_seconds


class Container:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        dynamodb_client: Any | None = None,
        ses_client: Any | None = None,
        sns_client: Any | None = None,
    ) -> None:
        self.settings = settings
        # the one wall clock of the service: time.time, shifted by the local stack's LOCAL_CLOCK_START
        self.clock = clock if clock is not None else shifted_clock(settings.local_clock_offset_seconds)
        self._dynamodb_client = dynamodb_client
        self._ses_client = ses_client
        self._sns_client = sns_client
        self._lock = threading.RLock()  # builders nest (rag -> openai client)
        self._built: dict[str, Any] = {}
        # the operator routes' collaborators, when not the defaults (the per-user dollar cap's
        # reset and the alert channels' operator_action event): tests substitute recorders here
        self.spend_reset: UserSpendReset | None = None
        self.on_operator_action: Callable[[AuditEntry], None] | None = None

    def forget_clients(self) -> None:
        """Drop every built collaborator and the shared DynamoDB client: after a SnapStart restore their
        connections are stale (see init_phase). Each is rebuilt on its next use."""
        from dnd_rag.dal.dynamo import dynamodb_client

        with self._lock:
            self._built.clear()
        dynamodb_client.cache_clear()

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def authenticator(self) -> Authenticator:
        return self._once("authenticator", self._build_authenticator)

    @property
    def rag(self) -> RagService:
        return self._once("rag", self._build_rag)

    @property
    def queries(self) -> QueryService:
        return self._once("queries", self._build_queries)

    def _build_queries(self) -> QueryService:
        s = self.settings
        rag = self.rag
        floors = Floors(s.budget_min_passages, s.budget_min_completion_tokens)
        # one Fitter per model of the ladder, each counting with its model's tokenizer
        ladder = Ladder(
            [
                Fitter(generator.prompt_tokens, book, s.max_completion_tokens, floors)
                for generator, book in [(rag.generator, s.price_book), *self._fallbacks()]
            ]
        )
        return QueryService(
            rag,
            self.limiter,
            self.plans,
            Wallet(self.budget, self.user_budget, self.clock),
            ladder,
            self.clock,
            s.max_question_chars,
            controls=self.controls,
            cache=self.answer_cache,
            quota_events=self.quota_events,
            relevance=RelevanceGate(s.min_relevance_for(self.embedder.model)),
            moderation=self._build_moderation(),
        )

    def _build_moderation(self) -> QuestionModeration | None:
        """None unless MODERATION names a model (settings refuse it without OpenAI)."""
        s = self.settings
        if s.moderation is None:
            return None
        from dnd_rag.providers.openai_provider import OpenAIModerator

        return QuestionModeration(OpenAIModerator(self._openai_client(), s.moderation), s.openai_timeout_seconds)

    @property
    def answer_cache(self) -> AnswerCache | None:
        """None when ANSWER_CACHE_TTL is 0: then no cache read or write happens at all."""
        return self._once("answer_cache", self._build_answer_cache)

    def _build_answer_cache(self) -> AnswerCache | None:
        from dnd_rag.dal.retrieval.answer_cache import DynamoAnswerCache

        s = self.settings
        if s.answer_cache_ttl == 0:
            return None
        scope = CacheScope(
            chat_model=self.rag.generator.model,
            embedding_model=self.embedder.model,
            prompt_version=PROMPT_VERSION,
            max_completion_tokens=s.max_completion_tokens,
            entity_queries=s.retrieval_entity_queries,
            collections=tuple(s.collections),
            reasoning_effort=s.reasoning_effort if s.reasoning_model else None,
        )
        store = DynamoAnswerCache(self.dynamodb(), s.table_name)
        return AnswerCache(store, scope, s.answer_cache_ttl, self.clock)

    @property
    def corpus_versions(self) -> DynamoCorpusVersions:
        from dnd_rag.dal.retrieval.answer_cache import DynamoCorpusVersions

        return self._once("corpus_versions", lambda: DynamoCorpusVersions(self.dynamodb(), self.settings.table_name))

    @property
    def controls(self) -> ControlsCache:
        """This container's copy of the operator controls (pause, blocks, budget override)."""
        return self._once("controls", self._build_controls)

    def _build_controls(self) -> ControlsCache:
        return ControlsCache(self._control_store(), self.clock, self.settings.controls_refresh_seconds)

    def _control_store(self) -> DynamoControlStore:
        from dnd_rag.dal.operations.controls import DynamoControlStore

        return self._once("control_store", lambda: DynamoControlStore(self.dynamodb(), self.settings.table_name))

    @property
    def operator(self) -> OperatorService:
        return self._once("operator", self._build_operator)

    def _build_operator(self) -> OperatorService:
        return OperatorService(
            self._control_store(),
            self.controls,
            self.limiter,
            usd_to_nanos(self.settings.daily_budget_usd),
            self.clock,
            spend_reset=self.user_budget if self.spend_reset is None else self.spend_reset,
            on_action=self.operator_events.on_audit if self.on_operator_action is None else self.on_operator_action,
            shard_split=self.budget.override_split,
            configured_month_budget=self.configured_month_budget,
            month_split=self.budget.month_split,
        )

    @property
    def configured_month_budget(self) -> int | None:
        """MONTHLY_BUDGET_USD in nano-dollars (None: no monthly budget unless an operator sets one)."""
        usd = self.settings.monthly_budget_usd
        return usd_to_nanos(usd) if usd is not None else None

    @property
    def usage(self) -> UsageService:
        return self._once(
            "usage",
            lambda: UsageService(
                self.limiter, self.plans, self.budget, self.ledgers, self.clock, self.controls, self.user_budget
            ),
        )

    @property
    def spend(self) -> SpendExport:
        """The spend export (GET /api/admin/spend), from the per-day books."""
        return self._once("spend", lambda: SpendExport(self.books, self.clock, self.operator))

    @property
    def ingest_books(self) -> DynamoIngestBooks:
        """The corpus ingester's embeddings on the books (dal/money/ingest_books.py)."""
        from dnd_rag.dal.money.ingest_books import DynamoIngestBooks

        return self._once("ingest_books", lambda: DynamoIngestBooks(self.dynamodb(), self.settings.table_name))

    @property
    def books(self) -> BooksWithIngest:
        """The day's books as the spend export and the reconciliation read them: the budget's plus the ingests'."""
        return self._once("books", lambda: BooksWithIngest(self.ledgers, self.ledgers, self.ingest_books))

    @property
    def reconciliation_results(self) -> ReconciliationResults:
        """The stored reconciliations (GET /api/admin/reconciliation)."""
        return self._once(
            "reconciliation_results", lambda: ReconciliationResults(self._reconciliation_store(), self.clock)
        )

    def _reconciliation_store(self) -> DynamoReconciliationStore:
        from dnd_rag.dal.operations.reconciliation import DynamoReconciliationStore

        return self._once(
            "reconciliation_store", lambda: DynamoReconciliationStore(self.dynamodb(), self.settings.table_name)
        )

    def reconciler(self) -> Reconciler | None:
        """The scheduled reconciliation with OpenAI's records; None without an admin key. Built per run:
        the key (SSM, deployed) is read by the job that needs it, never on a query's cold start."""
        from dnd_rag.providers.openai_usage import OpenAIUsageApi

        s = self.settings
        if s.openai_admin_key is not None:
            key = s.openai_admin_key.get_secret_value()
        elif s.openai_admin_key_parameter:
            from dnd_rag.dal.secrets import read_secret

            key = read_secret("OPENAI_ADMIN_KEY_PARAMETER", s.openai_admin_key_parameter)
        else:
            return None
        return Reconciler(
            self.books,
            OpenAIUsageApi(key, s.openai_base_url, s.openai_project_id),
            self._reconciliation_store(),
            self.clock,
            s.embedding_model,
            s.price_book.embedding,
            usd_to_nanos(s.reconciliation_tolerance_usd),
            s.reconciliation_lookback_days,
            self.notifier,
        )

    @property
    def replays(self) -> ReplayGate:
        """What an idempotent replay passes before its stored answer is served (logic/limits/replays.py)."""
        return self._once("replays", lambda: ReplayGate(self.controls, self.limiter, self.clock))

    @property
    def idempotency_store(self) -> Any:
        from dnd_rag.dal.idempotency import idempotency_store

        return self._once("idempotency", lambda: idempotency_store(self.dynamodb(), self.settings.table_name))

    @property
    def budget(self) -> Budget:
        return self._once("budget", self._build_budget)

    @property
    def user_budget(self) -> UserBudget:
        """Each user's dollar cap and in-flight limit (``reset_spend`` is the operator's reset)."""
        return self._once("user_budget", self._build_user_budget)

    def _build_user_budget(self) -> UserBudget:
        from dnd_rag.dal.money.user_budget import DynamoUserBudgetStore

        store = DynamoUserBudgetStore(self.dynamodb(), self.settings.table_name)
        return UserBudget(
            store,
            self.budget,
            self.clock,
            lease_seconds=self.settings.budget_lease_seconds,
            quota_events=self.quota_events,
        )

    @property
    def ledgers(self) -> DynamoLedgers:
        from dnd_rag.dal.money.budget import DynamoLedgers

        return self._once("ledgers", lambda: DynamoLedgers(self.dynamodb(), self.settings.table_name))

    def _build_budget(self) -> Budget:
        from dnd_rag.dal.money.budget import DynamoBudgetStore
        from dnd_rag.logic.money.month import MonthBudget

        s = self.settings
        store = DynamoBudgetStore(self.dynamodb(), s.table_name)
        limit = usd_to_nanos(s.daily_budget_usd)
        controls = self.controls
        notifier = self.notifier
        alerts = None
        if notifier.enabled:
            from dnd_rag.dal.money.budget import DynamoLedgers

            # composing a budget event reads the top users inside the alert's bound: the alert client
            ledgers = DynamoLedgers(self.alert_dynamodb(), s.table_name)
            alerts = BudgetAlerts(store, ledgers, notifier, lambda day: controls.budget_limit(day, limit), self.clock)
        return Budget(
            store,
            limit,
            self.clock,
            observer=alerts,
            lease_seconds=s.budget_lease_seconds,
            effective_limit=controls.budget_limit,
            shards=s.budget_shards,
            holds_per_shard=s.budget_holds_per_shard,
            min_shard=usd_to_nanos(s.budget_min_shard_usd),
            override_shards=controls.shard_limits,
            month=MonthBudget(store, self.configured_month_budget, controls.month_override, self.clock),
            month_observer=MonthAlerts(notifier, self.clock) if notifier.enabled else None,
            month_shards=controls.month_shard_limits,
        )

    @property
    def notifier(self) -> Notifier:
        """Alert events to every configured channel (none configured: a notifier that does nothing)."""
        return self._once("notifier", self._build_notifier)

    def _build_notifier(self) -> Notifier:
        from dnd_rag.dal.alerts.event_claims import DynamoEventClaims
        from dnd_rag.dal.alerts.pending_events import DynamoPendingEvents

        s = self.settings
        channels: list[AlertChannel] = []
        if s.alert_email and s.alert_from:
            from dnd_rag.dal.alerts.mailer import SesMailer, ses_client

            channels.append(MailChannel(SesMailer(self._ses_client or ses_client(), s.alert_from, s.alert_email)))
        if s.alert_sns_topic_arn:
            from dnd_rag.dal.alerts.sns_channel import SnsChannel, sns_client

            channels.append(SnsChannel(self._sns_client or sns_client(), s.alert_sns_topic_arn))
        if s.alert_webhook_url:
            from dnd_rag.providers.webhook import WebhookChannel

            channels.append(WebhookChannel(s.alert_webhook_url, s.alert_webhook_timeout_seconds))
        claims = DynamoEventClaims(self.alert_dynamodb(), s.table_name)
        # each channel, the claims and the compose read declare their worst case: the notifier's bound
        return Notifier(
            claims,
            channels,
            self.clock,
            claim_seconds=s.alert_claim_seconds,
            compose_seconds=COMPOSE_SECONDS,
            pending=DynamoPendingEvents(self.alert_dynamodb(), s.table_name),
        )

    def pending_alerts(self) -> PendingAlerts | None:
        """The sweeper's retry of the alert events requests left unsettled (None: no channel)."""
        if not self.notifier.enabled:
            return None
        from dnd_rag.dal.alerts.pending_events import DynamoPendingEvents

        store = DynamoPendingEvents(self.alert_dynamodb(), self.settings.table_name)
        return PendingAlerts(self.notifier, store, self.clock)

    def alert_dynamodb(self) -> Any:
        """The DynamoDB client of alert work (short timeouts, one SDK attempt: it runs inside the
        notifier's bound), or the injected client."""
        from dnd_rag.dal.alerts.event_claims import alert_store_client

        return self._dynamodb_client or self._once("alert_dynamodb", alert_store_client)

    @property
    def quota_events(self) -> QuotaEvents | None:
        """``user_quota_nearing`` / ``user_quota_exceeded`` (None when no channel is configured).
        The per-user dollar cap calls ``observe_spend(day, user_id, spent, cap)`` on it."""
        return self._once(
            "quota_events", lambda: QuotaEvents(self.notifier, self.clock) if self.notifier.enabled else None
        )

    @property
    def operator_events(self) -> OperatorEvents:
        """``operator_action``: pass ``operator_events.on_action`` as the operator routes' hook."""
        return self._once("operator_events", lambda: OperatorEvents(self.notifier, self.clock))

    @property
    def plans(self) -> PlanBook:
        return self._once("plans", self._build_plans)

    def _build_plans(self) -> PlanBook:
        s = self.settings
        cap = usd_to_nanos(s.user_daily_budget_usd) if s.user_daily_budget_usd is not None else None
        return PlanBook(
            Policy(s.token_bucket_capacity, s.token_refill_rate, s.daily_user_request_limit),
            s.plan_limits,
            UserLimits(cap, s.max_in_flight_per_user),
        )

    @property
    def limiter(self) -> RateLimiter:
        return self._once("limiter", self._build_limiter)

    def dynamodb(self) -> Any:
        from dnd_rag.dal.dynamo import dynamodb_client

        return self._dynamodb_client or dynamodb_client()

    def _build_limiter(self) -> RateLimiter:
        from dnd_rag.dal.limits.rate_limit import DynamoLimitStore

        return RateLimiter(DynamoLimitStore(self.dynamodb(), self.settings.table_name))

    def _build_authenticator(self) -> Authenticator:
        from dnd_rag.dal.auth.token_cache import DynamoTokenCache
        from dnd_rag.providers.auth_api import HttpAuthApi

        s = self.settings
        ip_policy = Policy(s.ip_auth_failure_capacity, s.ip_auth_failure_refill_rate, IP_DAILY_FAILURES)
        return Authenticator(
            auth_api=HttpAuthApi(s.auth_api_url, s.auth_timeout_seconds),
            shared_cache=DynamoTokenCache(self.dynamodb(), s.table_name),
            clock=self.clock,
            ttl_seconds=s.token_cache_ttl,
            negative_ttl_seconds=s.token_negative_cache_ttl,
            failed_auth_guard=FailedAuthGuard(
                self.limiter, ip_policy, self.clock, in_flight_seconds=s.auth_timeout_seconds + 1
            ),
        )

    def _openai_client(self) -> Any:
        from dnd_rag.providers.openai_provider import make_client

        s = self.settings
        key = s.openai_api_key
        assert key is not None  # guaranteed by Settings when a provider is openai
        return self._once(
            "openai", lambda: make_client(key.get_secret_value(), s.openai_base_url, s.openai_timeout_seconds)
        )

    @property
    def embedder(self) -> Embedder:
        return self._once("embedder", self._build_embedder)

    def _build_embedder(self) -> Embedder:
        if self.settings.embedding_provider == "openai":
            from dnd_rag.providers.openai_provider import OpenAIEmbedder

            return OpenAIEmbedder(self._openai_client(), self.settings.embedding_model)
        from dnd_rag.providers.offline import OfflineEmbedder

        return OfflineEmbedder()

    def _build_generator(self) -> Generator:
        if self.settings.llm_provider == "openai":
            return self._openai_generator(self.settings.openai_model)
        from dnd_rag.providers.offline import ExtractiveGenerator

        return ExtractiveGenerator()

    def _openai_generator(self, model: str) -> Generator:
        from dnd_rag.providers.openai_provider import OpenAIGenerator

        s = self.settings
        reasoning = s.price_book_for(model).chat.reasoning
        return OpenAIGenerator(self._openai_client(), model, reasoning, s.reasoning_effort if reasoning else None)

    def _fallbacks(self) -> list[tuple[Generator, PriceBook]]:
        """The cheaper models of OPENAI_MODEL_FALLBACKS, each with its generator and prices (none with
        the offline answerer: it is one model)."""

        def build() -> list[tuple[Generator, PriceBook]]:
            s = self.settings
            if s.llm_provider != "openai":
                return []
            return [(self._openai_generator(model), s.price_book_for(model)) for model in s.openai_model_fallbacks]

        return self._once("fallbacks", build)

    def chroma_client(self) -> Any:
        from dnd_rag.providers.chroma_store import connect

        s = self.settings
        key = s.chroma_api_key.get_secret_value() if s.chroma_api_key else None
        return connect(s.chroma_host, s.chroma_port, s.chroma_ssl, key, s.chroma_tenant, s.chroma_database)

    def _build_rag(self) -> RagService:
        from dnd_rag.providers.chroma_store import ChromaRetriever, MetadataKeys

        s = self.settings
        embedder = self.embedder
        keys = MetadataKeys(tuple(s.chroma_source_keys), tuple(s.chroma_title_keys), tuple(s.chroma_page_keys))
        retriever = ChromaRetriever(self.chroma_client, s.collections, embedder.model, keys)
        return RagService(
            embedder,
            retriever,
            self._build_generator(),
            s.price_book,
            PaidCalls(),
            s.openai_timeout_seconds,
            s.chroma_timeout_seconds,
            s.retrieval_entity_queries,
            fallbacks=self._fallbacks(),
        )
