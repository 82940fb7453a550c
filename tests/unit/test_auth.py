"""The authenticator's caching policy, with in-memory stand-ins for the two outside ports."""

from dataclasses import dataclass, field

import pytest

from dnd_rag.errors import (
    AuthUnavailableError,
    ForbiddenError,
    InvalidTokenError,
    IpRateLimitedError,
    MissingTokenError,
)
from dnd_rag.logic.auth.authenticator import Authenticator, bearer_token, token_hash
from dnd_rag.models.domain import User

ALICE = User(id="alice")


@dataclass
class StubAuthApi:
    users: dict[str, User]
    calls: int = 0
    down: bool = False

    def fetch_user(self, token):
        self.calls += 1
        if self.down:
            raise AuthUnavailableError("down")
        return self.users.get(token)


@dataclass
class MemoryCache:
    items: dict = field(default_factory=dict)

    def get(self, key, now):
        entry = self.items.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry

    def put(self, key, user, expires_at, validated_at):
        self.items[key] = (user, expires_at, validated_at)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def make(api=None, shared=None, clock=None, guard=None):
    api = api or StubAuthApi({"good": ALICE})
    shared = shared if shared is not None else MemoryCache()
    clock = clock or Clock()
    authenticator = Authenticator(api, shared, clock, ttl_seconds=300, negative_ttl_seconds=30, failed_auth_guard=guard)
    return authenticator, api, shared, clock


class RecordingGuard:
    """The failed-sign-in guard as a log of what happened in which order; ``slots`` to spare."""

    def __init__(self, api, slots=10):
        self.events = []
        self.slots = slots
        api_fetch = api.fetch_user

        def fetch_user(token):
            self.events.append("auth_api")
            return api_fetch(token)

        api.fetch_user = fetch_user

    def charge(self, ip):
        if self.slots == 0:
            self.events.append("refused")
            raise IpRateLimitedError("too many", retry_after=10)
        self.slots -= 1
        self.events.append("charge")
        guard = self

        class Slot:
            def give_back(self):
                guard.slots += 1
                guard.events.append("give_back")

            def keep(self):
                guard.events.append("keep")

        return Slot()

    def record_failure(self, ip):
        self.charge(ip)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "Token good", "Bearer a b"])
def test_missing_or_malformed_headers_are_missing_token(header):
    with pytest.raises(MissingTokenError):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive():
    assert bearer_token("bearer good") == "good"


def test_first_call_asks_the_auth_api_then_the_local_cache_answers():
    auth, api, _, _ = make()

    first = auth.authenticate("Bearer good")
    second = auth.authenticate("Bearer good")

    assert (first.user, first.source) == (ALICE, "auth_api")
    assert (second.user, second.source) == (ALICE, "local")
    assert api.calls == 1


def test_a_new_container_finds_the_user_in_the_shared_cache():
    shared = MemoryCache()
    make(shared=shared)[0].authenticate("Bearer good")
    other_container, api, _, _ = make(shared=shared)

    result = other_container.authenticate("Bearer good")

    assert result.source == "shared"
    assert api.calls == 0


def test_the_shared_cache_is_keyed_by_hash_and_never_holds_the_token():
    auth, _, shared, _ = make()

    auth.authenticate("Bearer good")

    assert list(shared.items) == [token_hash("good")]
    assert "good" not in repr(shared.items)


def test_a_copy_from_the_shared_cache_expires_with_the_shared_entry():
    shared = MemoryCache()
    first, _, _, clock = make(shared=shared)
    first.authenticate("Bearer good")  # validated at t0, trusted until t0 + 300
    clock.now += 200
    second, api, _, _ = make(shared=shared, clock=clock)
    assert second.authenticate("Bearer good").source == "shared"

    clock.now += 101  # t0 + 301: past the validation's lifetime, though the copy is only 101 s old
    assert second.authenticate("Bearer good").source == "auth_api"
    assert api.calls == 1


def test_entries_expire_after_the_ttl():
    auth, api, _, clock = make()
    auth.authenticate("Bearer good")

    clock.now += 301
    result = auth.authenticate("Bearer good")

    assert result.source == "auth_api"
    assert api.calls == 2


def test_rejections_are_cached_briefly():
    auth, api, _, clock = make()

    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            auth.authenticate("Bearer bad")
    assert api.calls == 1

    clock.now += 31
    with pytest.raises(InvalidTokenError):
        auth.authenticate("Bearer bad")
    assert api.calls == 2


def test_auth_api_down_is_not_cached_and_not_a_401():
    auth, api, shared, _ = make()
    api.down = True

    with pytest.raises(AuthUnavailableError):
        auth.authenticate("Bearer good")

    api.down = False
    assert auth.authenticate("Bearer good").user == ALICE
    assert len(shared.items) == 1


def test_a_guess_pays_its_slot_before_the_auth_api_is_asked_and_a_valid_token_gets_it_back():
    api = StubAuthApi({"good": ALICE})
    guard = RecordingGuard(api, slots=1)
    auth, _, _, _ = make(api=api, guard=guard)

    assert auth.authenticate("Bearer good").user == ALICE
    with pytest.raises(InvalidTokenError):
        auth.authenticate("Bearer bad")
    with pytest.raises(IpRateLimitedError):
        auth.authenticate("Bearer other-guess")

    assert guard.events == ["charge", "auth_api", "give_back", "charge", "auth_api", "keep", "refused"]


def test_an_auth_api_that_cannot_answer_costs_the_address_nothing():
    api = StubAuthApi({"good": ALICE}, down=True)
    guard = RecordingGuard(api, slots=1)
    auth, _, _, _ = make(api=api, guard=guard)

    with pytest.raises(AuthUnavailableError):
        auth.authenticate("Bearer good")

    assert (guard.events, guard.slots) == (["charge", "auth_api", "give_back"], 1)


def test_a_cached_rejection_is_charged_as_a_failure_without_asking_again():
    api = StubAuthApi({})
    guard = RecordingGuard(api, slots=2)
    auth, _, _, _ = make(api=api, guard=guard)

    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            auth.authenticate("Bearer bad")
    with pytest.raises(IpRateLimitedError):
        auth.authenticate("Bearer bad")

    assert guard.events == ["charge", "auth_api", "keep", "charge", "refused"]


@pytest.mark.parametrize("level", ["local", "shared"])
def test_max_age_asks_the_auth_api_again_once_the_cached_answer_is_older(level):
    shared = MemoryCache()
    first, api, _, clock = make(shared=shared)
    first.authenticate("Bearer good")
    auth = first if level == "local" else make(api=api, shared=shared, clock=clock)[0]

    clock.now += 30
    within = auth.authenticate("Bearer good", max_age=30)
    clock.now += 1
    past = auth.authenticate("Bearer good", max_age=30)
    without = auth.authenticate("Bearer good")

    assert within.source == level
    assert past.source == "auth_api"
    assert without.source == "local"
    assert api.calls == 2


@pytest.mark.parametrize("user_id", ["auth0|abc123", "google-oauth2|1234", "a.b+c@example.com", "42"])
def test_ids_identity_providers_issue_sign_in(user_id):
    user = User(id=user_id)
    auth, _, _, _ = make(api=StubAuthApi({"good": user}))

    assert auth.authenticate("Bearer good").user == user


@pytest.mark.parametrize("user_id", ["", "a b", "x" * 129, "tab\t", "émile", "nul\x00"])
def test_an_id_outside_the_rule_is_refused_also_from_the_cache(user_id):
    auth, api, _, _ = make(api=StubAuthApi({"odd": User(id=user_id)}))

    for _ in range(2):
        with pytest.raises(ForbiddenError):
            auth.authenticate("Bearer odd")
    assert api.calls == 1
