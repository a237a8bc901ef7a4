"""``make bench``: run every benchmark and print its table."""

from __future__ import annotations

from benchmarks import seed_reader


def main() -> None:
    for line in seed_reader.run():
        print(line)


if __name__ == "__main__":
    main()
