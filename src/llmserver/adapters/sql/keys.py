from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql.models import ApiKeyModel
from llmserver.domain.keys import EDITABLE_KEY_FIELDS, ApiKey
from llmserver.domain.ports import KeyStore

_T: Table = ApiKeyModel.__table__  # type: ignore[assignment]


def _by_id(key_id: str) -> Select[ApiKeyModel]:
    return select(ApiKeyModel).where(ApiKeyModel.id == key_id)


class SqlKeyStore(KeyStore):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    async def add(self, key: ApiKey) -> None:
        async with self._sessions() as session:
            try:
                session.add(ApiKeyModel(**columns(key)))
                await session.commit()
            except IntegrityError as exc:  # only the id and the prefix are unique
                raise ValueError(
                    f"a key with id {key.id!r} or prefix {key.prefix!r} exists"
                ) from exc

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._sessions() as session:
            row = await session.scalar(_by_id(key_id))
            return None if row is None else record(row, ApiKey)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        # The lookup behind every authentication (refreshed in the background by the key
        # cache) is a Core query: through an ORM session and a repository it cost 7-9 ms
        # of event-loop CPU, a stall every refresh under load.
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.prefix == prefix))).one_or_none()
        return None if row is None else record(row, ApiKey)

    async def list(self) -> Sequence[ApiKey]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ApiKeyModel).order_by(ApiKeyModel.created_at, ApiKeyModel.id)
            )
            return [record(row, ApiKey) for row in rows]

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        async with self._sessions.begin() as session:
            # The WHERE keeps the first revocation time: revoking twice changes nothing.
            await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key_id, ApiKeyModel.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            row = await session.scalar(_by_id(key_id))
            return None if row is None else record(row, ApiKey)

    async def update(self, key: ApiKey) -> ApiKey | None:
        values = columns(key)
        async with self._sessions.begin() as session:
            await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key.id)
                .values({name: values[name] for name in EDITABLE_KEY_FIELDS})
            )
            row = await session.scalar(_by_id(key.id))
            return None if row is None else record(row, ApiKey)

    async def touch(self, key_id: str, at: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ApiKeyModel).where(ApiKeyModel.id == key_id).values(last_used_at=at)
            )
