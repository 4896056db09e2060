from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from advanced_alchemy.filters import OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from llmserver.adapters.sql.models import ApiKeyModel
from llmserver.domain.keys import ApiKey, Role


class ApiKeyRepository(SQLAlchemyAsyncRepository[ApiKeyModel]):
    model_type = ApiKeyModel


def _repository(session: AsyncSession, *, auto_commit: bool = False) -> ApiKeyRepository:
    # Unwrapped SQLAlchemy errors: every SQL store then fails the same way, whichever
    # of repository or Core statement it used.
    return ApiKeyRepository(session=session, auto_commit=auto_commit, wrap_exceptions=False)


_T: Table = ApiKeyModel.__table__  # type: ignore[assignment]


def _to_domain(row: ApiKeyModel | Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        role=Role(row.role),
        created_at=row.created_at,
        quota_tokens=row.quota_tokens,
        rpm_limit=row.rpm_limit,
        allowed_models=tuple(row.allowed_models),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _to_row(key: ApiKey) -> ApiKeyModel:
    return ApiKeyModel(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        key_hash=key.key_hash,
        role=key.role.value,
        created_at=key.created_at,
        quota_tokens=key.quota_tokens,
        rpm_limit=key.rpm_limit,
        allowed_models=list(key.allowed_models),
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


class SqlKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    async def add(self, key: ApiKey) -> None:
        async with self._sessions() as session:
            try:
                await _repository(session, auto_commit=True).add(_to_row(key))
            except IntegrityError as exc:  # only the id and the prefix are unique
                raise ValueError(
                    f"a key with id {key.id!r} or prefix {key.prefix!r} exists"
                ) from exc

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._sessions() as session:
            row = await _repository(session).get_one_or_none(id=key_id)
            return None if row is None else _to_domain(row)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        # The lookup behind every authentication (refreshed in the background by the key
        # cache) is a Core query: through an ORM session and the repository it cost 7-9 ms
        # of event-loop CPU, a stall every refresh under load.
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.prefix == prefix))).one_or_none()
        return None if row is None else _to_domain(row)

    async def list(self) -> Sequence[ApiKey]:
        async with self._sessions() as session:
            rows = await _repository(session).get_many(
                OrderBy("created_at", "asc"), OrderBy("id", "asc")
            )
            return [_to_domain(row) for row in rows]

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        async with self._sessions.begin() as session:
            # The WHERE keeps the first revocation time: revoking twice changes nothing.
            await session.execute(
                update(ApiKeyModel)
                .where(ApiKeyModel.id == key_id, ApiKeyModel.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            row = await _repository(session).get_one_or_none(id=key_id)
            return None if row is None else _to_domain(row)

    async def touch(self, key_id: str, at: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ApiKeyModel).where(ApiKeyModel.id == key_id).values(last_used_at=at)
            )
