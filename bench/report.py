"""Printing and saving benchmark tables."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    limit: float
    comparison: str  # ">=" or "<="
    detail: str = ""

    @property
    def met(self) -> bool:
        return (
            self.measured >= self.limit if self.comparison == ">=" else self.measured <= self.limit
        )


def machine() -> str:
    import os

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{platform.machine()}, {os.cpu_count()} cores, {python}"


def progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


def render(title: str, measurements: dict[str, str], targets: list[Target]) -> str:
    lines = [
        f"## {title}",
        "",
        f"Machine: {machine()}; run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
    ]
    lines += ["| measurement | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in measurements.items()]
    lines += ["", "| target | measured | required | met |", "|---|---|---|---|"]
    for t in targets:
        lines.append(
            f"| {t.name} | {t.measured:.3f} | {t.comparison} {t.limit:g} {t.detail} | "
            f"{'met' if t.met else 'NOT MET'} |"
        )
    return "\n".join(lines) + "\n"


def save(
    name: str,
    title: str,
    measurements: dict[str, str],
    targets: list[Target],
    raw: Mapping[str, object],
) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = render(title, measurements, targets)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "measurements": measurements,
                "targets": [asdict(t) | {"met": t.met} for t in targets],
                "raw": raw,
            },
            indent=2,
        )
    )
    print(text, flush=True)
    return text
