"""``TeamAdmin.usages``: every team as ``usage`` finds it, read in a bounded number of
ledger listings however many teams there are (the console's Teams page asks it on every
load)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from llmserver.adapters.memory.teams import MemoryTeamStore
from llmserver.domain.budget import BudgetWindow, window_period
from llmserver.domain.quota import period_of
from llmserver.domain.team_admin import TeamAdmin
from unit.key_admin_support import CountedLedger, FakeClock

WINDOWS = [None, BudgetWindow.DAY, BudgetWindow.WEEK, BudgetWindow.MONTH]


async def test_every_team_is_read_as_usage_reads_it_in_a_few_listings() -> None:
    clock, quota, spend = FakeClock(), CountedLedger(), CountedLedger()
    admin = TeamAdmin(MemoryTeamStore(), clock, usage=quota, budget=spend)
    now = clock.now()
    last_month = now - timedelta(days=40)
    for n in range(40):
        window = WINDOWS[n % len(WINDOWS)]
        team = await admin.create(
            name=f"team {n:02d}",
            budget_nanodollars=None if window is None else 10**9,
            budget_window=window or BudgetWindow.MONTH,
        )
        if n % 3:  # some teams have counted nothing
            await quota.settle(team.ledger_id, period_of(now), 0, 10 * n)
            await spend.settle(team.ledger_id, window_period(team.budget_window, now), 0, n)
        await quota.reserve(team.ledger_id, period_of(now), n, None)  # in flight
        await quota.settle(team.ledger_id, period_of(last_month), 0, 1)  # another month
    await quota.settle("a-key-id", period_of(now), 0, 5)  # a key's row, not a team's
    quota.reads.clear()

    listed = await admin.usages()

    assert (quota.reads, spend.reads) == (Counter(list=1), Counter(list=3))
    assert [t.name for t, _ in listed] == [f"team {n:02d}" for n in range(40)]
    assert listed == [await admin.usage(team.id) for team, _ in listed]
    assert {u.budget is None for _, u in listed} == {True, False}
    assert {u.quota.used_tokens > 0 for _, u in listed} == {True, False}
