"""How the streaming seed reader scales: memory held versus file size, and speed per format.

The seed-data validator and the worker read seed files with ``iter_seed_records`` straight from an
S3 body. The claims under test: memory does not grow with the file (the peak traced allocation
stays flat, a few records' worth, while the file grows 16x, so the memory ratio stays near 1), and
each format reads at least as fast as the stdlib parser given the whole file at once, on the same
bytes (``json.loads`` of the array, ``json.loads`` per line after ``splitlines``,
and ``csv.DictReader`` over the decoded text, named per case in ``CASES``; both sides hand every
record to the same counting loop). The reader is measured as the validator and the worker use it,
with the hostile-input limits on (depth and integer digits, issue 14): ``run`` first makes sure
each case still refuses a record nested too deep. From the speed on one core follows the time to
validate 100 MB at the deployed Lambda size: 512 MB of memory gives 512 / 1769 of a vCPU.
"""

from __future__ import annotations

import csv
import io
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator

from functions.seed_data.reader import MAX_RECORD_DEPTH, SeedDataError, SeedFormat, iter_seed_records

CHUNK = 256 * 1024  # what the validator asks S3 for per read


def _record(i: int) -> dict:
    return {"author": {"name": f"Author {i}", "bio": "x" * 200, "books": [f"Book {i}-{j}" for j in range(3)]}}


def _lines(case: str, count: int) -> Iterator[bytes]:
    if case == "jsonl":
        for i in range(count):
            yield json.dumps(_record(i)).encode() + b"\n"
    elif case in ("json", "json_indented"):
        separator = b",\n  " if case == "json_indented" else b","
        yield b"["
        for i in range(count):
            yield (separator if i else b"") + json.dumps(_record(i)).encode()
        yield b"]"
    else:
        yield b"name,bio\n" if case == "csv_flat" else b"author.name,author.bio\n"
        for i in range(count):
            yield f"Author {i},{'x' * 200}\n".encode()


# case -> (format, the stdlib baseline it is measured against). "csv" has dotted columns (nested
# records), "csv_flat" plain ones; "json" is one line, as ``json.dumps`` writes a list (read in
# batches), "json_indented" one element per line (read element by element).
CASES = {
    "jsonl": (SeedFormat.JSONL, "json.loads per line of bytes.splitlines()"),
    "json": (SeedFormat.JSON, "json.loads of the whole file"),
    "json_indented": (SeedFormat.JSON, "json.loads of the whole file"),
    "csv": (SeedFormat.CSV, "csv.DictReader over the decoded file"),
    "csv_flat": (SeedFormat.CSV, "csv.DictReader over the decoded file"),
}


def _chunks(case: str, count: int) -> Iterator[bytes]:
    """The file in S3-sized chunks, generated on the fly so the benchmark itself holds no file."""
    buffer = bytearray()
    for piece in _lines(case, count):
        buffer += piece
        while len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    if buffer:
        yield bytes(buffer)


def _refuses_a_deep_record(case: str) -> bool:
    """Whether the reader, as measured, still holds the case's layout to the depth limit."""
    deep = '{"a": ' * (MAX_RECORD_DEPTH + 1) + "1" + "}" * (MAX_RECORD_DEPTH + 1)
    documents = {
        "jsonl": '{"ok": 1}\n' + deep + "\n",
        "json": '[{"ok": 1},' + deep + "]",
        "json_indented": '[{"ok": 1},\n  {"ok": 2},\n  ' + deep + ",\n  {}]",
    }
    document = documents.get(case, ".".join(["a"] * (MAX_RECORD_DEPTH + 1)) + "\nx\n")
    try:
        sum(1 for _ in iter_seed_records([document.encode()], CASES[case][0]))
    except SeedDataError as error:
        return "deeper" in error.message
    return False


def _size(case: str, count: int) -> int:
    return sum(len(c) for c in _chunks(case, count))


def _measure(case: str, count: int) -> tuple[float, int]:
    """(seconds, peak traced bytes while reading) for one pass over ``count`` records."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    seen = sum(1 for _ in iter_seed_records(_chunks(case, count), CASES[case][0]))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == count, (case, seen, count)
    return elapsed, peak


LAMBDA_MEMORY_MB = 512  # stacks/lambdas.py
LAMBDA_VCPU = LAMBDA_MEMORY_MB / 1769  # Lambda gives one full vCPU at 1,769 MB
API_TIMEOUT_S = 29


# Each baseline is given the whole file at once and, like the reader's caller, hands every
# record to the same counting loop.
def _stdlib(fmt: SeedFormat, data: bytes) -> int:
    if fmt is SeedFormat.JSON:
        return sum(1 for _ in json.loads(data))
    if fmt is SeedFormat.JSONL:
        return sum(1 for line in data.splitlines() if line.strip() and json.loads(line) is not None)
    return sum(1 for _ in csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _seconds(action: Callable[[], object]) -> float:
    """CPU seconds of this process: both sides are single-threaded and CPU-bound, and on a shared
    machine wall time mostly measures how long the scheduler kept us waiting."""
    started = time.process_time()
    action()
    return time.process_time() - started


def _speed_vs_stdlib(case: str, count: int, rounds: int = 5) -> tuple[float, float]:
    """(reader MB/s, reader speed / stdlib speed) on the same bytes: the two alternate, best of
    ``rounds`` each, so a burst of load on a shared machine hits both alike."""
    fmt = CASES[case][0]
    data = b"".join(_chunks(case, count))
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    reader = stdlib = float("inf")
    for _ in range(rounds):
        reader = min(reader, _seconds(lambda: sum(1 for _ in iter_seed_records(iter(chunks), fmt))))
        stdlib = min(stdlib, _seconds(lambda: _stdlib(fmt, data)))
    return len(data) / 1e6 / reader, stdlib / reader


# The small file is a few read chunks, past the first (the reader holds about one chunk's records
# at a time, so a file of one or two chunks holds less than any larger one).
def run(small: int = 4_000, large: int = 64_000, timed: int = 32_000) -> tuple[list[str], dict]:
    rows = [
        "seed reader: memory held vs file size (16x more records);"
        " speed vs the stdlib parser of the whole file"
    ]
    rows.append(
        f"{'case':<14}{'file (large)':>14}{'peak mem small':>16}{'peak mem large':>16}"
        f"{'mem ratio':>11}{'MB/s':>8}{'vs stdlib':>11}{'100 MB at 512 MB':>18}"
    )
    results: dict = {
        "lambda_memory_mb": LAMBDA_MEMORY_MB,
        "lambda_vcpu": round(LAMBDA_VCPU, 3),
        "formats": {},
    }
    for case, (_, baseline) in CASES.items():
        assert _refuses_a_deep_record(case), f"{case}: the limits must be on while measuring"
        _, peak_small = _measure(case, small)
        _, peak_large = _measure(case, large)
        size = _size(case, large)
        speed, ratio = _speed_vs_stdlib(case, timed)
        lambda_seconds = 100 / (speed * LAMBDA_VCPU)
        results["formats"][case] = {
            "file_mb": round(size / 1e6, 1),
            "memory_ratio": round(peak_large / peak_small, 2),
            "mb_per_s_one_core": round(speed, 1),
            "ratio_to_stdlib": round(ratio, 2),
            "stdlib_baseline": baseline,
            "seconds_for_100mb_at_512mb_lambda": round(lambda_seconds, 1),
        }
        rows.append(
            f"{case:<14}{size / 1e6:>11.1f} MB{peak_small / 1e6:>13.2f} MB{peak_large / 1e6:>13.2f} MB"
            f"{peak_large / peak_small:>11.2f}{speed:>8.1f}{ratio:>10.2f}x{lambda_seconds:>16.1f} s"
        )
    rows.extend(f"  {case} vs {baseline}" for case, (_, baseline) in CASES.items())
    rows.append(
        f"(100 MB at 512 MB = {LAMBDA_VCPU:.2f} vCPU: 100 / (MB/s x {LAMBDA_VCPU:.2f});"
        f" the API answers within {API_TIMEOUT_S} s)"
    )
    return rows, results
