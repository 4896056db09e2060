from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import KeyStore


class MemoryKeyStore(KeyStore):
    def __init__(self) -> None:
        self._by_id: dict[str, ApiKey] = {}

    async def add(self, key: ApiKey) -> None:
        if key.id in self._by_id or any(k.prefix == key.prefix for k in self._by_id.values()):
            raise ValueError(f"a key with id {key.id!r} or prefix {key.prefix!r} exists")
        self._by_id[key.id] = key

    async def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        return next((k for k in self._by_id.values() if k.prefix == prefix), None)

    async def list(self) -> Sequence[ApiKey]:
        return sorted(self._by_id.values(), key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        key = self._by_id.get(key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key = key.revoked(at)
            self._by_id[key_id] = key
        return key

    async def update(self, key: ApiKey) -> ApiKey | None:
        stored = self._by_id.get(key.id)
        if stored is None:
            return None
        self._by_id[key.id] = stored = stored.with_settings_of(key)
        return stored

    async def touch(self, key_id: str, at: datetime) -> None:
        key = self._by_id.get(key_id)
        if key is not None:
            self._by_id[key_id] = replace(key, last_used_at=at)
