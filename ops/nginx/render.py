"""Render ops/nginx/nginx.conf.template into a runnable nginx.conf.

Each ``${NAME}`` placeholder takes the environment variable of that name, else the default
below. The official nginx image renders the same template with envsubst (compose), so this
script is for bare metal and the test suite:

    NGINX_PORT=80 LLMSERVER_UPSTREAM=127.0.0.1:8000 \
        python ops/nginx/render.py /etc/nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("nginx.conf.template")

PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1",
    "fc00::/7",
)
"""Where /metrics may be read from: loopback and private ranges (Prometheus, operators)."""


def metrics_acl(allow: Iterable[str]) -> str:
    """nginx access rules admitting ``allow`` and refusing everyone else."""
    return " ".join([*(f"allow {net};" for net in allow), "deny all;"])


DEFAULTS: Mapping[str, str] = {
    "NGINX_PORT": "8080",
    "LLMSERVER_UPSTREAM": "127.0.0.1:8000",
    "GRAFANA_UPSTREAM": "127.0.0.1:3000",
    "PROMETHEUS_UPSTREAM": "127.0.0.1:9090",
    "PGADMIN_UPSTREAM": "127.0.0.1:5050",
    # Keep equal to the app's request body limit.
    "MAX_BODY": "1m",
    # Longer than the longest generation a client may wait for.
    "PROXY_READ_TIMEOUT": "600s",
    # Debian's nginx already owns this directory; the tests pass a throwaway one.
    "NGINX_TEMP_DIR": "/var/lib/nginx",
    "NGINX_ACCESS_LOG": "/dev/stdout",
    "METRICS_ACL": metrics_acl(PRIVATE_NETWORKS),
}

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def upstream_servers(value: str) -> str:
    """``"127.0.0.1:8000 127.0.0.1:8001"`` -> the ``server`` lines of the app's upstream block
    (one llmserver process per port, balanced by nginx). The template writes the first
    ``server`` and the final ``;``, so one address renders the same as with envsubst."""
    addresses = value.replace(",", " ").split()
    if not addresses:
        raise ValueError("LLMSERVER_UPSTREAM names no address")
    return ";\n        server ".join(addresses)


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """The config with every placeholder filled from ``values``, then the defaults."""
    text = TEMPLATE.read_text() if template is None else template
    merged = {**DEFAULTS, **values}
    merged["LLMSERVER_UPSTREAM"] = upstream_servers(merged["LLMSERVER_UPSTREAM"])
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - merged.keys())
    if unknown:
        raise KeyError(f"no value for template placeholders: {', '.join(unknown)}")
    # safe_substitute leaves nginx's own $variables alone.
    return Template(text).safe_substitute(merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="where to write nginx.conf ('-' for stdout)")
    args = parser.parse_args(argv)
    values = {name: os.environ[name] for name in DEFAULTS if name in os.environ}
    conf = render(values)
    if str(args.out) == "-":
        sys.stdout.write(conf)
    else:
        args.out.write_text(conf)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
