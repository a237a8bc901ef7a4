"""Fair-share promotion order (``plan_promotions``), as properties over random queues.

Among the jobs of users under their cap: priority first, then the user with the fewest running
jobs, then the oldest. The properties say what that order guarantees without restating it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.promoter.models import ClaimOutcome, QueueEntry, SlotState, plan_promotions
from functions.promoter.repository import claim_outcome

pytestmark = pytest.mark.unit

USERS = ["ann", "bob", "cid", "dee"]


@st.composite
def queues(draw: st.DrawFn) -> list[QueueEntry]:
    count = draw(st.integers(min_value=0, max_value=25))
    entries = []
    for index in range(count):
        priority = draw(st.integers(min_value=1, max_value=10))
        second = draw(st.integers(min_value=0, max_value=59))
        user = draw(st.sampled_from(USERS))
        job_id = f"job-{index:03d}"
        created = f"2026-11-30T12:00:{second:02d}.000Z"
        entries.append(
            QueueEntry(
                status="QUEUED",
                queue_key=f"{10 - priority:02d}#{created}#{job_id}",
                job_id=job_id,
                user_id=user,
            )
        )
    return entries


running_counts = st.dictionaries(st.sampled_from(USERS), st.integers(min_value=0, max_value=3), max_size=4)


@settings(max_examples=300, deadline=None)
@given(queue=queues(), running=running_counts, free=st.integers(0, 8), cap=st.integers(1, 4))
def test_promotion_order_properties(
    queue: list[QueueEntry], running: dict[str, int], free: int, cap: int
) -> None:
    plan = plan_promotions(queue, running, free, cap)
    chosen = {e.job_id for e in plan}
    final = Counter(running) + Counter(e.user_id for e in plan)
    left = [e for e in queue if e.job_id not in chosen]

    # Bounds: never more than the free slots; nobody pushed past the cap by this plan.
    assert len(plan) <= free
    assert len(chosen) == len(plan)
    for user in USERS:
        assert final[user] <= max(cap, running.get(user, 0))
    # Work-conserving: a slot stays free only when every waiting job's user is at the cap.
    if len(plan) < free:
        assert all(final[e.user_id] >= cap for e in left)
    for waiting in left:
        if final[waiting.user_id] >= cap:
            continue  # its user is capped: it may wait whatever its priority
        for picked in plan:
            # Priority first: nobody of a lower priority goes before a job whose user had room.
            assert picked.priority >= waiting.priority
            if picked.priority == waiting.priority:
                # Then the user with the fewest running: the picked user ends at most one above.
                assert final[picked.user_id] <= final[waiting.user_id] + 1
                if picked.user_id == waiting.user_id:
                    # Then age: a user's jobs of one priority start oldest first.
                    assert picked.age_key < waiting.age_key


def test_fewest_running_user_goes_first_at_equal_priority() -> None:
    def entry(job_id: str, user: str, priority: int, second: int) -> QueueEntry:
        key = f"{10 - priority:02d}#2026-11-30T12:00:{second:02d}.000Z#{job_id}"
        return QueueEntry(status="QUEUED", queue_key=key, job_id=job_id, user_id=user)

    # The run: one user holds slots and queues more; another's job at priority 10 arrives last.
    queue = [entry(f"a{i}", "ann", 5, i) for i in range(5)] + [
        entry("b0", "bob", 5, 30),
        entry("b1", "bob", 10, 59),
    ]
    plan = plan_promotions(queue, {"ann": 1}, free=3, per_user_cap=3)
    # Priority 10 first (b1). Then ann and bob run one each: the oldest (a0). Then bob runs fewer,
    # so his job goes before ann's four older ones.
    assert [e.job_id for e in plan] == ["b1", "a0", "b0"]

    # At her cap, ann waits even with slots free.
    capped = plan_promotions(queue, {"ann": 2}, free=3, per_user_cap=2)
    assert [e.job_id for e in capped] == ["b1", "b0"]


def test_slot_state_counts_only_holders_and_finds_stale_user_entries() -> None:
    state = SlotState(
        holders=frozenset({"j1", "j2"}), users={"ann": frozenset({"j1", "j3"}), "bob": frozenset({"j9"})}
    )
    remaining = {"j1", "j2"}
    assert state.running_by_user(remaining) == {"ann": 1}
    assert state.stale_user_slots(remaining) == {"ann": {"j3"}, "bob": {"j9"}}


def test_a_failed_slot_condition_with_room_left_is_the_users_cap() -> None:
    failed = {"Code": "ConditionalCheckFailed", "Item": {"holders": {"SS": ["x"]}}}
    ok = {"Code": "None"}
    assert claim_outcome("j", [failed, ok, ok], max_running=3) is ClaimOutcome.USER_FULL
    full = {"Code": "ConditionalCheckFailed", "Item": {"holders": {"SS": ["x", "y", "z"]}}}
    assert claim_outcome("j", [full, ok, ok], max_running=3) is ClaimOutcome.SLOTS_FULL
