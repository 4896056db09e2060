"""``make help``: the target list, coloured only for a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENV = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}


def test_make_help_is_plain_text_when_piped() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True
    ).stdout
    assert "\x1b" not in out
    assert re.search(r"^  run +Install what is missing", out, re.MULTILINE)


def test_make_help_colours_the_target_names_on_a_terminal() -> None:
    primary, secondary = pty.openpty()
    with subprocess.Popen(["make", "-s", "help"], cwd=ROOT, env=ENV, stdout=secondary) as make:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's last writer has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(primary)
    assert make.returncode == 0
    assert "\x1b[36mrun" in b"".join(chunks).decode()
