"""How the streaming seed reader scales: memory held versus file size, and speed per format.

The seed-data validator and the worker read seed files with ``iter_seed_records`` straight from an
S3 body. The claim under test is that memory does not grow with the file: the peak traced allocation
should stay flat (a few records' worth) while the file grows 16x, so the memory ratio between the
two sizes stays near 1. Throughput is reported relative to JSONL, the simplest format.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator

from functions.seed_data.reader import SeedFormat, iter_seed_records

CHUNK = 256 * 1024  # what the validator asks S3 for per read


def _record(i: int) -> dict:
    return {"author": {"name": f"Author {i}", "bio": "x" * 200, "books": [f"Book {i}-{j}" for j in range(3)]}}


def _lines(fmt: SeedFormat, count: int) -> Iterator[bytes]:
    if fmt is SeedFormat.JSONL:
        for i in range(count):
            yield json.dumps(_record(i)).encode() + b"\n"
    elif fmt is SeedFormat.JSON:
        yield b"["
        for i in range(count):
            yield (b"," if i else b"") + json.dumps(_record(i)).encode()
        yield b"]"
    else:
        yield b"author.name,author.bio\n"
        for i in range(count):
            yield f"Author {i},{'x' * 200}\n".encode()


def _chunks(fmt: SeedFormat, count: int) -> Iterator[bytes]:
    """The file in S3-sized chunks, generated on the fly so the benchmark itself holds no file."""
    buffer = bytearray()
    for piece in _lines(fmt, count):
        buffer += piece
        while len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    if buffer:
        yield bytes(buffer)


def _size(fmt: SeedFormat, count: int) -> int:
    return sum(len(c) for c in _chunks(fmt, count))


def _measure(fmt: SeedFormat, count: int) -> tuple[float, int]:
    """(seconds, peak traced bytes while reading) for one pass over ``count`` records."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    seen = sum(1 for _ in iter_seed_records(_chunks(fmt, count), fmt))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == count, (fmt, seen, count)
    return elapsed, peak


def run(small: int = 2_000, large: int = 32_000) -> list[str]:
    rows = ["seed reader: memory held vs file size (16x more records), speed relative to JSONL"]
    rows.append(
        f"{'format':<7}{'file (large)':>14}{'peak mem small':>16}{'peak mem large':>16}"
        f"{'mem ratio':>11}{'speed vs JSONL':>16}"
    )
    speeds: dict[SeedFormat, float] = {}
    for fmt in (SeedFormat.JSONL, SeedFormat.JSON, SeedFormat.CSV):
        _, peak_small = _measure(fmt, small)
        seconds, peak_large = _measure(fmt, large)
        size = _size(fmt, large)
        speeds[fmt] = size / seconds
        rows.append(
            f"{fmt.value:<7}{size / 1e6:>11.1f} MB{peak_small / 1e6:>13.2f} MB{peak_large / 1e6:>13.2f} MB"
            f"{peak_large / peak_small:>11.2f}{speeds[fmt] / speeds[SeedFormat.JSONL]:>15.2f}x"
        )
    return rows
