"""The init phase: SnapStart's restore hook makes the container re-create its network clients and
reseed ``random``."""

import random

import pytest
from snapshot_restore_py import get_after_restore

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import dynamodb_client
from dnd_rag.init_phase import prepare
from dnd_rag.settings import load_settings

MINIMAL = {"AUTH_API_URL": "http://127.0.0.1:8081", "TABLE_NAME": "dnd-rag-local"}


@pytest.fixture
def restore_hooks(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    hooks = get_after_restore()
    registered = len(hooks)
    yield hooks
    del hooks[registered:]  # the registry is the runtime's, process-wide
    dynamodb_client.cache_clear()  # built here without credentials: later tests must build their own


def run_after_restore(hooks):
    # as the runtime interface client does after resuming a snapshot
    for func, args, kwargs in hooks:
        func(*args, **kwargs)


def test_after_a_restore_the_container_builds_new_clients(restore_hooks):
    # Given a container prepared during init, whose clients were built (in the snapshot)
    container = Container(load_settings(MINIMAL))
    prepare(container)
    authenticator, limiter, client = container.authenticator, container.limiter, dynamodb_client()

    # When Lambda resumes an execution environment from the snapshot
    run_after_restore(restore_hooks)

    # Then the next use builds them anew, with new connections
    assert container.authenticator is not authenticator
    assert container.limiter is not limiter
    assert dynamodb_client() is not client


def test_prepare_registers_one_hook_per_container(restore_hooks):
    registered = len(restore_hooks)

    prepare(Container(load_settings(MINIMAL)))

    assert len(restore_hooks) == registered + 1


def test_environments_restored_from_one_snapshot_draw_different_jitter(restore_hooks):
    # Given a snapshot taken after init: the random module's state is part of it
    prepare(Container(load_settings(MINIMAL)))
    snapshot = random.getstate()

    # When two execution environments resume from that same snapshot
    draws = []
    for _ in range(2):
        random.setstate(snapshot)
        run_after_restore(restore_hooks)
        draws.append([random.random() for _ in range(4)])

    # Then each reseeded from the OS: their retry jitter is not in lockstep
    assert draws[0] != draws[1]
