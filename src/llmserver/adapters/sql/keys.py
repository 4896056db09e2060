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


_LIMIT_FIELDS = [c.name for c in _LIMITS.c if c.name != "key_id"]
_WITH_LIMITS = select(_T, *(_LIMITS.c[name].label(f"limit_{name}") for name in _LIMIT_FIELDS))
"""Keys with their model limits, one row per limit (a key without any: one row of
NULLs), in one query: the auth path's key lookups make one round trip, not two."""
_JOINED = _T.outerjoin(_LIMITS, _LIMITS.c.key_id == _T.c.id)


def _keys_of(rows: Iterable[Any]) -> list[ApiKey]:
    """The keys of ``_WITH_LIMITS`` rows, in the rows' order, each with its model limits
    sorted by model id as the domain sorts them (by code point: a database's collation
    may differ)."""
    keys: dict[str, tuple[ApiKey, list[ModelLimit]]] = {}
    for row in rows:
        found = keys.get(row.id)
        if found is None:
            found = keys[row.id] = (record(row, ApiKey), [])
        if row.limit_model_id is not None:
            values = {name: getattr(row, f"limit_{name}") for name in _LIMIT_FIELDS}
            found[1].append(ModelLimit(**values))
    return [
        replace(key, model_limits=tuple(sorted(limits, key=lambda m: m.model_id)))
        if limits
        else key
        for key, limits in keys.values()
    ]


async def _one(conn: AsyncConnection | AsyncSession, where: Any) -> ApiKey | None:
    found = _keys_of(await conn.execute(_WITH_LIMITS.select_from(_JOINED).where(where)))
    return found[0] if found else None


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
            return await _one(conn, _T.c.id == key_id)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        # The lookup behind every authentication (refreshed in the background by the key
        # cache) is a Core query: through an ORM session and a repository it cost 7-9 ms
        # of event-loop CPU, a stall every refresh under load.
        async with self._engine.connect() as conn:
            return await _one(conn, _T.c.prefix == prefix)

    async def list(self) -> Sequence[ApiKey]:
        async with self._engine.connect() as conn:
            query = _WITH_LIMITS.select_from(_JOINED).order_by(_T.c.created_at, _T.c.id)
            return _keys_of(await conn.execute(query))

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        async with self._sessions.begin() as session:
            # The WHERE keeps the first revocation time: revoking twice changes nothing.
            await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key_id, ApiKeyModel.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            return await _one(session, _T.c.id == key_id)  # read back in the same transaction

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
            return await _one(session, _T.c.id == key.id)

    async def touch(self, key_id: str, at: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ApiKeyModel).where(ApiKeyModel.id == key_id).values(last_used_at=at)
            )
