"""The audit trail's contract, over every adapter: entries come back as recorded (the
longest legal values included, which PostgreSQL checks), newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmserver.domain.audit import (
    AUDIT_TARGET_MAX_CHARS,
    AuditAction,
    AuditEvent,
    AuditQuery,
)
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS
from llmserver.domain.ports import AuditLog

T0 = datetime(2026, 3, 14, 12, 0, 0, 250000, tzinfo=UTC)


def event(n: int, **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "at": T0 + timedelta(seconds=n),
        "action": AuditAction.KEY_UPDATE if n % 2 else AuditAction.KEY_CREATE,
        "actor_key_id": "admin-a" if n % 3 else "admin-b",
        "actor_prefix": "abcdefabcdef",
        "target": f"key-{n % 2}",
        "request_id": f"req-{n}",
    }
    return AuditEvent(**(fields | changes))  # type: ignore[arg-type]


async def test_an_entry_comes_back_as_recorded(audit_log: AuditLog) -> None:
    longest = event(
        1,
        actor_key_id="k" * 64,
        actor_prefix="p" * 32,
        target="é" * AUDIT_TARGET_MAX_CHARS,
        request_id="r" * REQUEST_ID_MAX_CHARS,
        before={"rpm_limit": 60, "allowed_models": ["a", "b"], "expires_at": None},
        after={"rpm_limit": 2, "allowed_models": [], "expires_at": "2027-01-01T00:00:00+00:00"},
    )
    bare = event(2, target=None, request_id=None)
    first = await audit_log.record(longest)
    second = await audit_log.record(bare)
    assert second.id > first.id
    entries, total = await audit_log.query(AuditQuery())
    assert total == 2
    assert entries == [second, first]
    for entry, sent in ((first, longest), (second, bare)):
        assert (
            entry.at,
            entry.action,
            entry.actor_key_id,
            entry.actor_prefix,
            entry.target,
            entry.before,
            entry.after,
            entry.request_id,
        ) == (
            sent.at,
            sent.action,
            sent.actor_key_id,
            sent.actor_prefix,
            sent.target,
            sent.before,
            sent.after,
            sent.request_id,
        )


async def test_filters_and_pages(audit_log: AuditLog) -> None:
    for n in range(1, 13):
        await audit_log.record(event(n))
    updates, total = await audit_log.query(AuditQuery(action=AuditAction.KEY_UPDATE))
    assert total == 6
    assert [e.request_id for e in updates] == [f"req-{n}" for n in (11, 9, 7, 5, 3, 1)]

    by_b, _ = await audit_log.query(AuditQuery(actor_key_id="admin-b"))
    assert [e.request_id for e in by_b] == ["req-12", "req-9", "req-6", "req-3"]

    on_key, total = await audit_log.query(AuditQuery(target="key-0", limit=2, offset=1))
    assert total == 6
    assert [e.request_id for e in on_key] == ["req-10", "req-8"]

    window, total = await audit_log.query(
        AuditQuery(since=T0 + timedelta(seconds=4), until=T0 + timedelta(seconds=6))
    )
    assert total == 2
    assert [e.request_id for e in window] == ["req-5", "req-4"]

    none, total = await audit_log.query(AuditQuery(action=AuditAction.CACHE_PURGE))
    assert (list(none), total) == ([], 0)
