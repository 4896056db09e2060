"""Quota counters in Redis: replicas reserve, settle and release with one script call and no
database round trip, exact across replicas (see ``usage_scripts`` for the data and the
scripts).

The database stays the durable record. A key's counters for a period are read from it
once (by whichever replica first needs them) and seeded into Redis. What a replica
settles is queued in the hash under its own name, and remembered in its memory, and written
behind: every flush takes this replica's queued amounts and adds them to the database in
one transaction (``PendingUsage``), its own memory standing in for what Redis lost if it
restarted empty (``WriteGenerations``). A replica that crashes loses at most the flush in
progress; what it had queued in Redis is taken over by the next replica that touches the
key, or by any replica's start-up sweep (``reconcile``), once its lease has expired.

Holds carry the replica's lease the same way: a crashed replica's reservations stop
counting ``lease_s`` after its last renewal. A replica renews its lease every third of
that; one whose event loop stalls longer than ``lease_s`` may see its holds dropped (the
quota can then be passed by what those requests use).

When Redis cannot be reached, the failure policy decides, as for the rate limiter:
``fail_closed`` refuses the request (503); ``fail_open`` admits it without a hold. Either
way nothing settled is lost: a settle or release that failed is replayed on Redis by the
next flush, and at shutdown what could not be replayed is written to the database
directly. A script whose reply is lost to a timeout may have run: it is replayed too, so
that request can count twice (a quota errs towards refusing, never towards spending more).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import redis.asyncio as aioredis
import structlog

from llmserver.adapters.pending_usage import DurableUsage, PendingUsage, Slot
from llmserver.adapters.redis.guarded_limiter import FailurePolicy
from llmserver.adapters.redis.lease import REDIS_ERRORS, ReplicaLease
from llmserver.adapters.redis.pipe import Lua, RedisPipe
from llmserver.adapters.redis.script_args import packed
from llmserver.adapters.redis.turn_batch import TurnBatch
from llmserver.adapters.redis.usage_scripts import (
    NOT_SEEDED,
    RESERVE,
    SEED,
    SETTLE,
    TAKE_PENDING,
)
from llmserver.adapters.redis.write_generations import WriteGenerations
from llmserver.domain.budget import window_reset_at
from llmserver.domain.errors import Unavailable
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import ReservationResult, UsageRecord
from llmserver.domain.single_flight import SingleFlight

log = structlog.get_logger(__name__)

KEEP_AFTER_PERIOD = timedelta(days=31)
"""A period's hash outlives the period this long: admin reads of last month stay fresh."""
SWEEP_CHUNK = 500

# Named here: inside the class, ``list`` is the port's method.
Reply = list[int]
"""``RESERVE``'s answer: admitted, used, reserved, requests, hits, taken over."""
ScriptArgs = list[Any]
Replies = list[Any]
Entry = tuple[Slot, tuple[int, ...]]
"""One call's hash and its script arguments."""


@dataclass(slots=True)
class _Owed:
    """A settle or release Redis did not take, to replay."""

    release: int = 0
    used_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0


class RedisUsageStore(UsageStore):
    def __init__(
        self,
        client: aioredis.Redis,
        durable: DurableUsage,
        *,
        policy: FailurePolicy | str,
        prefix: str = "llmserver:",
        ledger: str = "usage",
        lease_s: float = 15.0,
        on_error: Callable[[str], None] | None = None,
        pipe: RedisPipe,
    ) -> None:
        """``pipe`` carries the batched scripts, ``client`` the rest. ``ledger`` names the
        counters' keys: ``usage`` (the token quota) or ``budget`` (nanodollars)."""
        self._client = client
        self._pipe = pipe
        self._durable = durable
        self._policy = FailurePolicy(policy)
        self._prefix = f"{prefix}{ledger}:"
        self._index = f"{prefix}{ledger}-index"
        self.lease = ReplicaLease(
            client, f"{prefix}replica:", lease_s, partial(self._failed, "renew")
        )
        self.replica = self.lease.replica
        self._on_error = on_error
        self._reserve_all = partial(self._run, RESERVE, [self.replica, self.lease.prefix])
        self._reserves: TurnBatch[Entry, Reply] = TurnBatch(
            self._reserve_all, orphaned=self._orphaned_hold
        )
        self._changes: TurnBatch[Entry, int] = TurnBatch(self._apply_all)
        self._take: Any = client.register_script(TAKE_PENDING)
        self._seed_script: Any = client.register_script(SEED)
        self._seeds: SingleFlight[Slot, None] = SingleFlight()
        self._generations = WriteGenerations()
        self._pending = PendingUsage()
        """Taken from Redis (or owed at shutdown), not yet in the database."""
        self._owed: dict[Slot, _Owed] = {}
        self._unheld: dict[Slot, int] = {}
        """Tokens ``fail_open`` admitted without a hold in Redis, per slot."""

    # -- the lease ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.lease.start()

    async def close(self) -> None:
        """After the last flush: give the lease up."""
        await self.lease.close()

    # -- the port ------------------------------------------------------------------------

    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        slot = (key_id, period)
        try:
            reply = await self._read(slot, tokens, quota)
        except REDIS_ERRORS as exc:
            self._failed("reserve", exc)
            if self._policy is FailurePolicy.FAIL_CLOSED:
                raise Unavailable("The quota store is unavailable; try again shortly.") from exc
            self._unheld[slot] = self._unheld.get(slot, 0) + tokens
            return ReservationResult(True, UsageRecord(key_id, period, reserved_tokens=tokens))
        return ReservationResult(bool(reply[0]), self._record(slot, reply))

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        slot = (key_id, period)
        await self._apply(slot, _Owed(self._held(slot, reserved), used, 1, int(cache_hit)))

    async def release(self, key_id: str, period: str, reserved: int) -> None:
        slot = (key_id, period)
        held = self._held(slot, reserved)
        if held:
            await self._apply(slot, _Owed(held))

    async def get(self, key_id: str, period: str) -> UsageRecord:
        slot = (key_id, period)
        try:
            return self._record(slot, await self._read(slot, 0, None))
        except REDIS_ERRORS as exc:
            self._failed("read", exc)
            return self._unflushed(await self._durable.get(key_id, period))

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        records = {
            (r.key_id, r.period): self._unflushed(r)
            for r in await self._durable.list(key_id=key_id, period=period)
        }
        try:
            slots = [
                s
                for s in await self._live_slots()
                if key_id in (None, s[0]) and period in (None, s[1])
            ]
            for slot, reply in (await self._sweep(slots)).items():
                records[slot] = self._record(slot, reply)
        except REDIS_ERRORS as exc:
            self._failed("read", exc)
        return sorted(records.values(), key=lambda r: (r.period, r.key_id))

    # -- writing behind ------------------------------------------------------------------

    async def flush(self) -> None:
        """Replay what Redis missed, take this replica's queued usage out of Redis and add
        it to the database (kept for the next flush if the database is down)."""
        # What was taken out of Redis before goes to the database even while Redis is down.
        try:
            for slot in list(self._owed):
                await self._apply(slot, self._owed.pop(slot), replay=True)
            queued = await self._generations.close_current()
            if queued:
                async with self._client.pipeline(transaction=False) as pipe:
                    for slot, generation in queued:
                        args = [self.replica, generation]
                        await self._take(keys=[self._key(slot)], args=args, client=pipe)
                    replies = await pipe.execute()
                for (slot, generation), taken in zip(queued, replies, strict=True):
                    used, requests, hits, *claimed = (int(value) for value in taken)
                    # Redis gives back less than this replica queued if it lost it (restarted
                    # without persistence): what it remembers is written instead. More, if a
                    # settlement ran whose answer never came (a timeout): see the docstring.
                    mine = self._generations.taken(slot, generation)
                    self._pending.add(
                        slot,
                        max(used, mine.used_tokens) + claimed[0],
                        max(requests, mine.requests) + claimed[1],
                        max(hits, mine.cache_hits) + claimed[2],
                    )
        finally:
            await self._pending.write(self._durable)

    async def flush_at_shutdown(self) -> None:
        """The last flush: what Redis still has not taken goes to the database directly."""
        try:
            await self.flush()
        except REDIS_ERRORS as exc:
            self._failed("flush", exc)
        self._generations.drain_into(self._pending)
        for slot, owed in self._owed.items():
            self._pending.add(slot, owed.used_tokens, owed.requests, owed.cache_hits)
        self._owed.clear()
        await self._pending.write(self._durable)

    async def reconcile(self) -> int:
        """Take over the usage and drop the holds of every replica whose lease has gone, in
        every live key's counters; returns how many keys had something to take."""
        slots = await self._live_slots()
        claimed = sum(1 for reply in (await self._sweep(slots)).values() if reply[5])
        log.info("usage_reconciled", keys=len(slots), taken_over=claimed)
        return claimed

    # -- helpers -------------------------------------------------------------------------

    def _key(self, slot: Slot) -> str:
        return f"{self._prefix}{slot[0]}:{slot[1]}"

    async def _read(self, slot: Slot, tokens: int, quota: int | None) -> Reply:
        entry = (slot, (tokens, -1 if quota is None else quota))
        reply: Reply = await self._seeded(self._reserves, entry)
        if reply[5]:
            self._generations.mark(slot)
        return reply

    async def _seeded(self, batch: TurnBatch[Entry, Any], entry: Entry) -> Any:
        """``batch``'s answer to ``entry``, its hash seeded from the database first if Redis
        does not have it. Seeded here, outside the batch: the other requests of its turn
        do not wait for a database read one key's first request of the month needs."""
        reply = await batch(entry)
        if _unseeded(reply):
            slot = entry[0]
            await self._seeds.join(slot, partial(self._seed, slot))
            reply = await batch(entry)
            if _unseeded(reply):
                raise aioredis.RedisError("usage counters vanished while being seeded")
        return reply

    async def _run(self, script: Lua, head: ScriptArgs, entries: Sequence[Entry]) -> Replies:
        """One call of ``script`` over ``entries`` (``-1`` for each whose hash is not
        seeded)."""
        replies: Replies = await self._pipe.evalsha(
            script,
            [self._key(slot) for slot, _ in entries],
            [*head, packed(value for _, values in entries for value in values)],
        )
        return replies

    async def _sweep(self, slots: Sequence[Slot]) -> dict[Slot, Reply]:
        """Read many keys' counters (taking over dead replicas' fields)."""
        read: dict[Slot, Reply] = {}
        for start in range(0, len(slots), SWEEP_CHUNK):
            chunk = slots[start : start + SWEEP_CHUNK]
            replies = await self._reserve_all([(slot, (0, -1)) for slot in chunk])
            for slot, reply in zip(chunk, replies, strict=True):
                if not _unseeded(reply):
                    read[slot] = reply
                    if reply[5]:
                        self._generations.mark(slot)
        return read

    async def _seed(self, slot: Slot) -> None:
        stored = await self._durable.get(*slot)
        expires = _expires_at(slot[1], datetime.now(UTC))
        args = [stored.used_tokens, stored.requests, stored.cache_hits, expires, "\t".join(slot)]
        await self._seed_script(keys=[self._key(slot), self._index], args=args)

    async def _live_slots(self) -> Sequence[Slot]:
        now = int(datetime.now(UTC).timestamp())
        await self._client.zremrangebyscore(self._index, "-inf", now)
        members = await self._client.zrange(self._index, 0, -1)
        return [_slot_of(m) for m in members if isinstance(m, (bytes, str))]

    async def _apply(self, slot: Slot, change: _Owed, *, replay: bool = False) -> None:
        values = (change.release, change.used_tokens, change.requests, change.cache_hits, 1)
        try:
            await self._seeded(self._changes, (slot, values))
        # Not only Redis's errors: seeding a key Redis lost reads the database, which may be
        # down too. A settlement must not fail the request it ends; it is kept and replayed.
        except Exception as exc:
            if not replay:
                self._failed("settle", exc)
            owed = self._owed.setdefault(slot, _Owed())
            owed.release += change.release
            owed.used_tokens += change.used_tokens
            owed.requests += change.requests
            owed.cache_hits += change.cache_hits
            if replay:
                raise

    async def _apply_all(self, entries: Sequence[Entry]) -> Replies:
        """Settlements and releases; what is queued for the database is also remembered
        here, whether or not its caller is still waiting for the answer."""
        generation = self._generations.send()
        try:
            replies = await self._run(SETTLE, [self.replica, generation], entries)
            for (slot, (_, used, requests, hits, _)), reply in zip(entries, replies, strict=True):
                if requests and not _unseeded(reply):
                    self._generations.queued(generation, slot, used, requests, hits)
        finally:
            self._generations.landed(generation)
        return replies

    def _orphaned_hold(self, entry: Entry, reply: Reply) -> None:
        """A reservation made for a request that was cancelled meanwhile: nobody will
        settle it, so the next flush releases it."""
        slot, (tokens, _) = entry
        if reply[0] == 1 and tokens > 0:
            self._owed.setdefault(slot, _Owed()).release += tokens

    def _held(self, slot: Slot, reserved: int) -> int:
        """The part of ``reserved`` held in Redis: a ``fail_open`` admission held none."""
        unheld = self._unheld.get(slot, 0)
        if not unheld:
            return reserved
        taken = min(unheld, reserved)
        if taken == unheld:
            del self._unheld[slot]
        else:
            self._unheld[slot] = unheld - taken
        return reserved - taken

    def _record(self, slot: Slot, reply: Reply) -> UsageRecord:
        _, used, reserved, requests, hits, _ = reply
        return UsageRecord(slot[0], slot[1], int(used), int(reserved), int(requests), int(hits))

    def _unflushed(self, stored: UsageRecord) -> UsageRecord:
        """The database's record plus what this replica has not written yet."""
        slot = (stored.key_id, stored.period)
        record = UsageRecord(*slot, stored.used_tokens, 0, stored.requests, stored.cache_hits)
        for queue in (self._pending, *self._generations.totals()):
            mine = queue.totals(slot)
            if mine is not None:
                record.used_tokens += mine.used_tokens
                record.requests += mine.requests
                record.cache_hits += mine.cache_hits
        return record

    def _failed(self, what: str, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error("usage")
        log.warning("quota_store_unavailable", op=what, policy=self._policy.value, error=repr(exc))


def _expires_at(period: str, now: datetime) -> int:
    """When a period's hash may go: ``KEEP_AFTER_PERIOD`` after the period, and never
    before that long from now (a past period's hash would otherwise expire at birth)."""
    try:
        end = window_reset_at(period) + KEEP_AFTER_PERIOD
    except (ValueError, OverflowError):  # 9999-12: past the last instant a datetime holds
        end = datetime.max.replace(tzinfo=UTC)
    return int(max(end, now + KEEP_AFTER_PERIOD).timestamp())


def _unseeded(reply: Any) -> bool:
    return bool(reply == NOT_SEEDED or (isinstance(reply, list) and reply[0] == NOT_SEEDED))


def _slot_of(member: bytes | str) -> Slot:
    text = member.decode() if isinstance(member, bytes) else member
    # The last tab: a per-model ledger's id holds a model id, which may hold one.
    key_id, _, period = text.rpartition("\t")
    return key_id, period
