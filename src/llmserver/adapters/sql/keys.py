from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql.models import ApiKeyModel, KeyModelLimitModel
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.keys import EDITABLE_KEY_FIELDS, ApiKey
from llmserver.domain.ports import KeyStore

_T: Table = ApiKeyModel.__table__  # type: ignore[assignment]
_LIMITS: Table = KeyModelLimitModel.__table__  # type: ignore[assignment]
_KEY_COLUMNS = frozenset(_T.c.keys())
"""``ApiKey``'s fields held in ``api_keys``; its model limits are rows of their own."""


def _key_columns(key: ApiKey) -> dict[str, Any]:
    return {name: value for name, value in columns(key).items() if name in _KEY_COLUMNS}


def _limit_rows(key: ApiKey) -> list[dict[str, Any]]:
    return [{"key_id": key.id, **columns(limit)} for limit in key.model_limits]


async def _with_limits(conn: AsyncConnection, keys: Iterable[ApiKey]) -> list[ApiKey]:
    """``keys`` with their model limits, read in one query, sorted by model id as the domain
    sorts them (by code point: a database's collation may differ)."""
    keys = list(keys)
    if not keys:
        return keys
    query = select(_LIMITS).where(_LIMITS.c.key_id.in_([k.id for k in keys]))
    found: dict[str, list[ModelLimit]] = {}
    for row in await conn.execute(query):
        found.setdefault(row.key_id, []).append(record(row, ModelLimit))
    return [
        replace(k, model_limits=tuple(sorted(found[k.id], key=lambda m: m.model_id)))
        if k.id in found
        else k
        for k in keys
    ]


class SqlKeyStore(KeyStore):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    async def add(self, key: ApiKey) -> None:
        async with self._sessions() as session:
            try:
                session.add(ApiKeyModel(**_key_columns(key)))
                await session.flush()
                if key.model_limits:
                    await session.execute(insert(_LIMITS), _limit_rows(key))
                await session.commit()
            except IntegrityError as exc:  # only the id and the prefix are unique
                raise ValueError(
                    f"a key with id {key.id!r} or prefix {key.prefix!r} exists"
                ) from exc

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            return await self._one(conn, _T.c.id == key_id)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        # The lookup behind every authentication (refreshed in the background by the key
        # cache) is a Core query: through an ORM session and a repository it cost 7-9 ms
        # of event-loop CPU, a stall every refresh under load.
        async with self._engine.connect() as conn:
            return await self._one(conn, _T.c.prefix == prefix)

    @staticmethod
    async def _one(conn: AsyncConnection, where: Any) -> ApiKey | None:
        row = (await conn.execute(select(_T).where(where))).one_or_none()
        if row is None:
            return None
        return (await _with_limits(conn, [record(row, ApiKey)]))[0]

    async def list(self) -> Sequence[ApiKey]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(_T).order_by(_T.c.created_at, _T.c.id))
            return await _with_limits(conn, [record(row, ApiKey) for row in rows])

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        async with self._sessions.begin() as session:
            # The WHERE keeps the first revocation time: revoking twice changes nothing.
            await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key_id, ApiKeyModel.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return await self.get(key_id)

    async def update(self, key: ApiKey) -> ApiKey | None:
        values = _key_columns(key)
        async with self._sessions.begin() as session:
            updated = await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key.id)
                .values({name: values[name] for name in EDITABLE_KEY_FIELDS if name in values})
            )
            if not updated.rowcount:  # type: ignore[attr-defined]
                return None
            # The key's model limits are replaced as a whole, in the same transaction.
            await session.execute(delete(_LIMITS).where(_LIMITS.c.key_id == key.id))
            if key.model_limits:
                await session.execute(insert(_LIMITS), _limit_rows(key))
        return await self.get(key.id)

    async def touch(self, key_id: str, at: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ApiKeyModel).where(ApiKeyModel.id == key_id).values(last_used_at=at)
            )
