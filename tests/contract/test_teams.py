"""The TeamStore contract, and a key's team as the key stores keep it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from contract.test_keys import make_key
from llmserver.domain.budget import MAX_BUDGET_USD, NANODOLLARS_PER_DOLLAR, BudgetWindow
from llmserver.domain.key_limits import MAX_PARALLEL, MAX_QUOTA_TOKENS, MAX_RPM, MAX_TPM
from llmserver.domain.ports import KeyStore, TeamStore
from llmserver.domain.teams import TEAM_NAME_MAX_CHARS, Team

T0 = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_team(n: int = 1, **changes: object) -> Team:
    fields: dict[str, object] = {"id": f"{n:032x}", "name": f"team {n}", "created_at": T0}
    return Team(**(fields | changes))  # type: ignore[arg-type]


def longest_team() -> Team:
    """Every field at its longest or largest legal value."""
    return make_team(
        id=uuid.uuid4().hex,  # what TeamAdmin issues
        name="名" * TEAM_NAME_MAX_CHARS,  # characters, not bytes
        quota_tokens=MAX_QUOTA_TOKENS,
        rpm_limit=MAX_RPM,
        tpm_limit=MAX_TPM,
        max_parallel=MAX_PARALLEL,
        budget_nanodollars=MAX_BUDGET_USD * NANODOLLARS_PER_DOLLAR,
        budget_window=BudgetWindow.WEEK,
    )


async def test_a_team_round_trips_with_every_field_at_its_longest(
    team_stores: tuple[TeamStore, KeyStore],
) -> None:
    teams, _ = team_stores
    team = longest_team()
    await teams.add(team)

    stored = await teams.get(team.id)
    assert stored == team
    assert stored is not None
    assert type(stored.budget_window) is BudgetWindow
    assert await teams.find_by_name(team.name) == team
    assert stored.created_at.tzinfo is not None


async def test_unknown_teams_are_none(team_stores: tuple[TeamStore, KeyStore]) -> None:
    teams, _ = team_stores
    assert await teams.get("0" * 32) is None
    assert await teams.find_by_name("nobody") is None
    assert await teams.update(make_team()) is None
    assert await teams.list() == []


async def test_ids_and_names_are_unique(team_stores: tuple[TeamStore, KeyStore]) -> None:
    teams, _ = team_stores
    await teams.add(make_team(1, name="research"))

    for clash in (make_team(2, name="research"), make_team(1, name="other")):
        try:
            await teams.add(clash)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{clash} was stored")
    assert await teams.list() == [make_team(1, name="research")]


async def test_list_is_by_name(team_stores: tuple[TeamStore, KeyStore]) -> None:
    teams, _ = team_stores
    for n, name in ((1, "b"), (2, "a"), (3, "C")):
        await teams.add(make_team(n, name=name))

    assert [t.name for t in await teams.list()] == ["C", "a", "b"]


async def test_update_changes_the_settings_and_keeps_id_and_creation(
    team_stores: tuple[TeamStore, KeyStore],
) -> None:
    teams, _ = team_stores
    team = make_team(rpm_limit=5, quota_tokens=1000)
    await teams.add(team)
    await teams.get(team.id)  # a cache in front now holds the old copy
    wanted = replace(longest_team(), id=team.id, created_at=T0 + timedelta(days=3))

    stored = await teams.update(wanted)

    expected = replace(wanted, created_at=T0)
    assert stored == expected
    assert await teams.get(team.id) == expected
    assert await teams.find_by_name(wanted.name) == expected


async def test_renaming_to_a_taken_name_is_refused_and_changes_nothing(
    team_stores: tuple[TeamStore, KeyStore],
) -> None:
    teams, _ = team_stores
    await teams.add(make_team(1, name="a"))
    await teams.add(make_team(2, name="b", rpm_limit=3))

    try:
        await teams.update(make_team(2, name="a", rpm_limit=9))
    except ValueError:
        pass
    else:
        raise AssertionError("renamed onto another team")
    assert await teams.get(make_team(2).id) == make_team(2, name="b", rpm_limit=3)


async def test_a_key_keeps_its_team_and_can_change_or_leave_it(
    team_stores: tuple[TeamStore, KeyStore],
) -> None:
    teams, keys = team_stores
    first, second = make_team(1), make_team(2)
    await teams.add(first)
    await teams.add(second)
    key = make_key(team_id=first.id)
    await keys.add(key)
    assert await keys.get(key.id) == key
    assert await keys.find_by_prefix(key.prefix) == key

    moved = await keys.update(replace(key, team_id=second.id))
    assert moved is not None
    assert moved.team_id == second.id
    left = await keys.update(replace(key, team_id=None))
    assert left == replace(key, team_id=None)
