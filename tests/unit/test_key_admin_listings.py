"""``KeyAdmin.budgets`` and ``KeyAdmin.model_quotas`` over every key: each as a read of its
own ledger record finds it, in a bounded number of ledger listings however many keys there
are (the console's Keys page asks both on every load)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from llmserver.adapters.memory import MemoryKeyStore, MemoryTeamStore, MemoryUsageStore
from llmserver.domain.budget import BudgetWindow, KeyBudget, window_period
from llmserver.domain.budget_status import budget_status
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.keys import KeyHasher
from llmserver.domain.model_quota_status import ModelQuotaStatus
from llmserver.domain.quota import model_ledger_id, period_of
from unit.key_admin_support import MODELS, SECRET, CountedLedger, FakeClock

WINDOWS = [None, BudgetWindow.DAY, BudgetWindow.WEEK, BudgetWindow.MONTH]


def _admin(clock: FakeClock, spend: CountedLedger, per_model: CountedLedger) -> KeyAdmin:
    hasher = KeyHasher(SECRET)
    quota, teams = MemoryUsageStore(), MemoryTeamStore()
    return KeyAdmin(MemoryKeyStore(), quota, hasher, clock, MODELS, spend, per_model, teams)


async def test_every_key_s_budget_is_read_as_its_own_record_in_a_few_listings() -> None:
    clock, spend = FakeClock(), CountedLedger()
    admin = _admin(clock, spend, CountedLedger())
    now = clock.now()
    for n in range(40):
        window = WINDOWS[n % len(WINDOWS)]
        budget = KeyBudget(None if window is None else 10**9 + n, window or BudgetWindow.MONTH)
        key, _ = await admin.create(name=f"key {n:02d}", budget=budget)
        if window is None:
            continue
        period = window_period(window, now)
        if n % 3:  # some keys have spent nothing yet
            await spend.settle(key.id, period, 0, 1_000 * n)
        await spend.reserve(key.id, period, n, None)  # in flight
        await spend.settle(key.id, window_period(window, now - timedelta(days=40)), 0, 7)
    await spend.settle("team:someone", window_period(BudgetWindow.DAY, now), 0, 5)
    spend.reads.clear()

    listed = await admin.budgets()

    assert spend.reads == Counter(list=3)  # a listing per window in use, no get
    keys = {key.id: key for key in await admin.list()}
    expected = [
        await budget_status(spend, s.key_id, s.budget, keys[s.key_id].budget_window, now)
        for s in listed
    ]
    assert listed == expected
    assert len(listed) == 30
    assert {s.window for s in listed} == set(WINDOWS[1:])
    assert {s.spent > 0 for s in listed} == {True, False}
    assert all(s.reserved > 0 for s in listed)


async def test_one_key_s_budget_is_one_read() -> None:
    clock, spend = FakeClock(), CountedLedger()
    admin = _admin(clock, spend, CountedLedger())
    key, _ = await admin.create(name="one", budget=KeyBudget(10**9, BudgetWindow.WEEK))
    await admin.create(name="other", budget=KeyBudget(10**9, BudgetWindow.DAY))
    await spend.settle(key.id, window_period(BudgetWindow.WEEK, clock.now()), 0, 42)
    spend.reads.clear()

    (status,) = await admin.budgets(key.id)

    assert spend.reads == Counter(get=1)
    assert (status.key_id, status.spent, status.window) == (key.id, 42, BudgetWindow.WEEK)


async def test_every_quota_on_a_model_is_read_as_its_own_record_in_one_listing() -> None:
    clock, per_model = FakeClock(), CountedLedger()
    admin = _admin(clock, CountedLedger(), per_model)
    month, last_month = period_of(clock.now()), period_of(clock.now() - timedelta(days=40))
    for n in range(20):
        limits = {"tiny": {"quota_tokens": 1_000 + n}, "demo": {"quota_tokens": 2_000 + n}}
        key, _ = await admin.create(name=f"key {n:02d}", model_limits=limits if n % 4 else {})
        for model in ("tiny", "demo-tiny-llama"):
            if n % 2:
                await per_model.settle(model_ledger_id(key.id, model), month, 0, 10 * n)
            await per_model.settle(model_ledger_id(key.id, model), last_month, 0, 3)
    per_model.reads.clear()

    listed = await admin.model_quotas()

    assert per_model.reads == Counter(list=1)
    expected = []
    for s in listed:
        record = await per_model.get(model_ledger_id(s.key_id, s.model_id), month)
        expected.append(
            ModelQuotaStatus(
                s.key_id,
                s.model_id,
                month,
                s.quota_tokens,
                record.used_tokens,
                record.reserved_tokens,
                record.remaining(s.quota_tokens),
                s.resets_at,
            )
        )
    assert listed == expected
    assert len(listed) == 30  # 15 keys, two models each
    assert {s.used_tokens > 0 for s in listed} == {True, False}
