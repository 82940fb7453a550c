"""What the init phase does besides validating the settings: heavy imports and SnapStart hooks.

Lambda runs init once per execution environment, before the first request, with its own 10 s
budget. Importing the SDKs of the configured providers there (the Chroma client is the heaviest,
~1.5 s) moves their cost from the first query to init; with SnapStart (template parameter
``SnapStart``) init even runs once per published version, and every environment resumes from its
snapshot, imports done.

A snapshot is resumed any number of times, so nothing made at init may need to be fresh or unique:
network connections opened at init would be stale after a restore, and a random seed or an id drawn
at init would be shared by every restored environment. Here: clients are built lazily on first use
and forgotten after a restore (the hook below re-creates them on next use); no id is drawn at init
(reservation ids are ``uuid4``, read from the OS per call); the ``random`` module's state is in the
snapshot all the same (seeded when it was imported), so every environment restored from one snapshot
would draw the same retry jitter and retry in lockstep: the hook reseeds it from the OS. The secrets
read from SSM at init stay valid (rotating one needs a new version, as a redeploy would). The hook
uses no Powertools: it must not depend on state that itself lives in the snapshot.
"""

from __future__ import annotations

import importlib
import random

from dnd_rag.container import Container

# Retrieval always uses the Chroma client; the OpenAI SDK only when a provider is openai.
HEAVY_MODULES = ("dnd_rag.providers.chroma_store",)
OPENAI_MODULE = "dnd_rag.providers.openai_provider"


def prepare(container: Container) -> None:
    """Import the SDKs the configured providers use; register the SnapStart restore hook."""
    settings = container.settings
    modules = list(HEAVY_MODULES)
    if "openai" in (settings.llm_provider, settings.embedding_provider):
        modules.append(OPENAI_MODULE)
    for module in modules:
        importlib.import_module(module)
    if settings.llm_provider == "openai":  # the encoding takes ~0.6 s to load: init, not the first query
        from dnd_rag.providers.tokenizer import encoding

        encoding(settings.openai_model)
    register_restore_hook(container)


def register_restore_hook(container: Container) -> None:
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:  # not Lambda's runtime (make dev, tests): there are no snapshots
        return
    register_after_restore(after_restore, container)


def after_restore(container: Container) -> None:
    """What a resumed snapshot needs before its first request: its own ``random`` state and new clients."""
    random.seed()  # no argument: fresh entropy from the OS (os.urandom)
    container.forget_clients()
