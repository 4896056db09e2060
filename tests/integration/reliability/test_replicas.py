"""Several replicas, one truth: limits hold across three server processes sharing one
Postgres database and one Redis database."""

from __future__ import annotations

import pytest

from integration.reliability.faultkit import SOAK
from integration.reliability.replicakit import Replicas, check_quota, check_rpm_burst

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RPM = 50
BURST = 900 if SOAK else 300
CONCURRENCY = 300
QUOTA_REQUESTS = 20
HAMMER = 120 if SOAK else 60


async def test_rpm_limit_holds_across_replicas(replicas: Replicas) -> None:
    await check_rpm_burst(replicas, RPM, BURST, CONCURRENCY)


async def test_quota_holds_across_replicas(replicas: Replicas) -> None:
    await check_quota(replicas, QUOTA_REQUESTS, HAMMER, CONCURRENCY)
