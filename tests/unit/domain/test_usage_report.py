"""The usage report's grouping and ranges."""

from __future__ import annotations

from datetime import date

import pytest

from llmserver.domain.errors import InvalidRequest
from llmserver.domain.logs import DailyUsage
from llmserver.domain.usage_report import Dimension, dimensions, report_range, summed

D1, D2 = date(2026, 12, 1), date(2026, 12, 2)
ROWS = [
    DailyUsage(D1, "a", "m1", 2, 10, 5, 1, 0, 7, team_id="t"),
    DailyUsage(D1, "b", "m1", 1, 3, 3, 0, 1, 1, team_id="t"),
    DailyUsage(D2, "a", "m2", 4, 20, 8, 2, 0, 10**12),
    DailyUsage(D2, None, None, 1, 0, 0, 0, 1, 0),
]


def test_rows_are_summed_exactly_per_group() -> None:
    by_key = summed(ROWS, (Dimension.KEY,))
    assert [(t.key_id, t.requests, t.total_tokens, t.cost_picodollars) for t in by_key] == [
        ("a", 6, 43, 10**12 + 7),
        ("b", 1, 6, 1),
        (None, 1, 0, 0),
    ]
    [everything] = summed(ROWS, ())
    assert (everything.requests, everything.cache_hits, everything.errors) == (8, 3, 2)
    assert everything.cost_picodollars == sum(r.cost_picodollars for r in ROWS)
    assert [(t.day, t.model) for t in summed(ROWS, (Dimension.MODEL, Dimension.DAY))] == [
        (D1, "m1"),
        (D2, "m2"),
        (D2, None),
    ]


def test_rows_are_summed_per_team_and_a_key_in_two_teams_has_a_row_in_each() -> None:
    by_team = summed(ROWS, (Dimension.TEAM,))
    assert [(t.team_id, t.requests, t.cost_picodollars) for t in by_team] == [
        ("t", 3, 8),
        (None, 5, 10**12),
    ]
    by_key_and_team = summed(ROWS, (Dimension.KEY, Dimension.TEAM))
    assert [(t.key_id, t.team_id, t.requests) for t in by_key_and_team] == [
        ("a", "t", 2),
        ("a", None, 4),
        ("b", "t", 1),
        (None, None, 1),
    ]


def test_group_by_is_read_in_any_order_and_checked() -> None:
    assert dimensions("day, key,day") == (Dimension.KEY, Dimension.DAY)
    assert dimensions("model,team") == (Dimension.TEAM, Dimension.MODEL)
    assert dimensions(None) == dimensions(" ") == (Dimension.KEY, Dimension.MODEL, Dimension.DAY)
    with pytest.raises(InvalidRequest, match="Unknown group_by 'org'") as bad:
        dimensions("key,org")
    assert bad.value.param == "group_by"


def test_ranges_include_their_last_day_and_are_bounded() -> None:
    assert report_range(None, None, D2) == (D1, date(2026, 12, 3))
    assert report_range(D2, D2, D2) == (D2, date(2026, 12, 3))
    with pytest.raises(InvalidRequest, match="before from"):
        report_range(D2, D1, D2)
    with pytest.raises(InvalidRequest, match="366 at most"):
        report_range(date(2025, 1, 1), date(2026, 1, 2), D2)
