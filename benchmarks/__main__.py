"""``make bench``: run every benchmark, print its table, write ``benchmarks/results/latest.json``."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from benchmarks import cold_start, fanout, seed_reader, worker

RESULTS = Path(__file__).parent / "results" / "latest.json"


def main() -> None:
    began = time.perf_counter()
    results: dict[str, object] = {"machine": {"python": platform.python_version(), "cpus": _cpus()}}
    for name, bench in (
        ("seed_reader", seed_reader.run),
        ("worker", worker.run),
        ("fanout", fanout.run),
        ("cold_start", cold_start.run),
    ):
        lines, numbers = bench()
        for line in lines:
            print(line, flush=True)
        print()
        results[name] = numbers
    results["seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS} in {results['seconds']} s")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
