"""`python -m bench [NAME ...]`: the benchmarks in ``BENCHES``, all of them by default."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "gateway": "bench.gateway_bench",
    "proxy": "bench.proxy_bench",
    "inference": "bench.inference_bench",
    "quantize": "bench.quantize_bench",
    "mlx": "bench.mlx_bench",
    "prefill": "bench.prefill_bench",
    "server": "bench.server_inference_bench",
    "embeddings": "bench.embeddings_bench",
    "structured": "bench.structured_bench",
    "routing": "bench.routing_bench",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unmet = []
    for name in chosen:
        print(f"== benchmark: {name}", flush=True)
        targets = importlib.import_module(BENCHES[name]).run()
        unmet += [t.name for t in targets if not t.met]
    if unmet:
        print("targets not met: " + "; ".join(unmet), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
