"""``make bench``: run every benchmark and print its table."""

from __future__ import annotations

from benchmarks import cold_start, seed_reader


def main() -> None:
    for line in seed_reader.run():
        print(line)
    print()
    for line in cold_start.run():
        print(line)


if __name__ == "__main__":
    main()
