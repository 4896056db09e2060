"""Fixtures of the key administration use case, on the in-memory stores."""

from __future__ import annotations

import pytest

from llmserver.adapters.memory import MemoryKeyStore, MemoryTeamStore, MemoryUsageStore
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.keys import KeyHasher
from unit.key_admin_support import MODELS, SECRET, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
def usage() -> MemoryUsageStore:
    return MemoryUsageStore()


@pytest.fixture
def teams() -> MemoryTeamStore:
    return MemoryTeamStore()


@pytest.fixture
def admin(
    keys: MemoryKeyStore, usage: MemoryUsageStore, clock: FakeClock, teams: MemoryTeamStore
) -> KeyAdmin:
    return KeyAdmin(
        keys, usage, KeyHasher(SECRET), clock, MODELS, MemoryUsageStore(), MemoryUsageStore(), teams
    )
