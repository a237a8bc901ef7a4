"""``plot-palette events``: one line per event, and the tail of events.jsonl (EventTail)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.cli import main
from local.commands.events import EventTail, format_event
from tests.unit.local.conftest import append_events, bus_events

pytestmark = pytest.mark.unit

JOB = "7d0c3a57-8f0e-4a55-9b0a-2f1e4c7d9a11"
TEMPLATE = "3f9b6a2e-1c4d-4e8f-a0b1-5c6d7e8f9a0b"


def test_each_event_is_one_line_of_time_source_type_and_the_ids() -> None:
    lines = [format_event(event) for event in bus_events()]
    assert lines[0] == (
        f"2026-11-28T16:20:01Z  plot-palette.templates   Template Created             "
        f"template_id={TEMPLATE} user_id=demo@example.com"
    )
    assert lines[1] == (
        f"2026-11-28T16:20:05Z  plot-palette.jobs        Job Queued                   "
        f"job_id={JOB} template_id={TEMPLATE} user_id=demo@example.com"
    )
    assert lines[4].endswith(f"job_id={JOB} user_id=demo@example.com status=COMPLETED")
    assert all("\n" not in line for line in lines)


def test_an_event_without_ids_ends_at_its_type() -> None:
    event = {**bus_events()[0], "detail": {}}
    assert format_event(event).endswith("Template Created")


@pytest.mark.parametrize("detail", ["job_id=abc", None, ["job_id"], 3])
def test_a_detail_that_is_not_an_object_shows_no_ids_instead_of_failing(detail: object) -> None:
    assert format_event({**bus_events()[1], "detail": detail}).endswith("Job Queued")


def test_a_captured_body_that_was_not_json_is_shown_raw() -> None:
    line = format_event({"raw": "not json\nat all"})
    assert line.endswith("(not an EventBridge event) not json at all")


def test_the_tail_reads_complete_lines_once_and_waits_for_a_half_written_one(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read_new() == []  # no file yet
    events = bus_events()
    append_events(path, events[:2])
    assert tail.read_new() == events[:2]
    assert tail.read_new() == []
    line = json.dumps(events[2], separators=(",", ":")) + "\n"
    with open(path, "a") as sink:
        sink.write(line[:40])
    assert tail.read_new() == []
    with open(path, "a") as sink:
        sink.write(line[40:])
    assert tail.read_new() == [events[2]]


def test_the_tail_skips_lines_that_are_not_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('garbage\n[1, 2]\n\n"text"\n' + json.dumps(bus_events()[0]) + "\n")
    assert EventTail(path).read_new() == [bus_events()[0]]


def test_the_tail_counts_bytes_so_non_ascii_details_do_not_shift_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = {**bus_events()[0], "detail": {"name": "Biografías de autoras ✍"}}
    path.write_text(json.dumps(first, ensure_ascii=False) + "\n")
    tail = EventTail(path)
    assert tail.read_new() == [first]
    append_events(path, bus_events()[1:2])
    assert tail.read_new() == bus_events()[1:2]


def test_the_tail_starts_over_when_the_file_is_truncated_or_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = bus_events()
    append_events(path, events)
    tail = EventTail(path)
    assert len(tail.read_new()) == len(events)
    path.write_text("")  # shrank: the state dir was reset
    append_events(path, events[:1])
    assert tail.read_new() == events[:1]
    replacement = tmp_path / "new.jsonl"
    append_events(replacement, events[:3])  # longer than what was read so far
    replacement.replace(path)
    assert tail.read_new() == events[:3]


def test_events_prints_the_file_as_lines_or_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    append_events(tmp_path / "events.jsonl", bus_events())
    assert main(["events", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [format_event(event) for event in bus_events()]
    assert main(["events", "--json", "--state-dir", str(tmp_path)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == bus_events()
