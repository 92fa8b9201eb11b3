"""The turn journal's numbering, publishing order and write-behind, without I/O."""

from __future__ import annotations

import json
import uuid

from actors.chat import TurnEvent, TurnJournal, turn_event_frame
from persistence import TurnStatus, utcnow


def test_events_wait_unnumbered_until_the_last_number_is_known() -> None:
    journal = TurnJournal()
    request = uuid.uuid4()
    assert journal.record(request, "accepted") is None
    assert list(journal.publishable()) == []
    numbered = journal.know(41)
    assert [(e.seq, e.kind) for e in numbered] == [(42, "accepted")]
    assert journal.record(request, "started").seq == 43  # type: ignore[union-attr]
    assert [e.seq for e in journal.publishable()] == [42, 43]
    assert journal.know(7) == []  # its own count is newer
    assert journal.last_seq == 43


def test_an_unready_event_holds_later_ones_back_until_ready() -> None:
    journal = TurnJournal()
    journal.know(0)
    request = uuid.uuid4()
    journal.record(request, "accepted")
    final = journal.record(request, TurnStatus.ANSWERED, {"reply": {}}, ready=False)
    journal.record(uuid.uuid4(), "accepted")
    assert [e.seq for e in journal.publishable()] == [1]
    assert final is not None
    journal.amend(final.seq, {"reply": {"files": [1]}})
    journal.ready(final.seq)
    published = list(journal.publishable())
    assert [e.seq for e in published] == [2, 3]
    assert json.loads(published[0].data) == {"reply": {"files": [1]}}
    assert [e.seq for e in journal.published_since(1)] == [2, 3]


def test_writes_are_taken_once_and_given_back_in_order() -> None:
    journal = TurnJournal()
    journal.know(0)
    request = uuid.uuid4()
    journal.turn(request, TurnStatus.RUNNING)
    journal.record(request, "started")
    taken = journal.take()
    assert [e[0] for e in taken.events] == [1]
    assert [t.status for t in taken.turns] == ["running"]
    assert not journal.pending
    journal.record(request, "master_invoked")
    journal.turn(request, TurnStatus.ANSWERED, delivered=True)
    journal.give_back(taken)  # the statement failed
    again = journal.take()
    assert [e[0] for e in again.events] == [1, 2]
    (row,) = again.turns
    assert (row.status, row.delivered) == ("answered", True)
    assert row.started_at is not None and row.finished_at is not None


def test_an_amended_event_that_was_stored_is_stored_again() -> None:
    journal = TurnJournal()
    journal.know(0)
    event = journal.record(uuid.uuid4(), "answered", {"reply": {}})
    assert event is not None
    journal.take()
    journal.amend(event.seq, {"reply": {"files": ["f"]}})
    (stored,) = journal.take().events
    assert stored[0] == event.seq
    assert json.loads(stored[3]) == {"reply": {"files": ["f"]}}


def test_the_frame_splices_the_data_in_as_it_is() -> None:
    journal = TurnJournal()
    journal.know(4)
    session = uuid.uuid4()
    event = journal.record(uuid.uuid4(), "agent_log", {"message": 'héllo "x"'})
    assert event is not None
    frame = json.loads(turn_event_frame(session, event))
    assert frame == {
        "type": "turn_event",
        "session_id": str(session),
        "request_id": str(event.request_id),
        "seq": 5,
        "kind": "agent_log",
        "at": event.at.isoformat(),
        "data": {"message": 'héllo "x"'},
    }


def test_suspended_numbering_holds_events_and_resumes_after_the_other_process() -> None:
    """A turn held back by another process's turn gives its unsent numbers back; once it
    may run, its events follow the other process's, which are published first."""
    journal = TurnJournal()
    journal.know(3)
    mine, queued, theirs = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    journal.record(uuid.uuid4(), "late_reply")  # published before: keeps its number
    assert [e.seq for e in journal.publishable()] == [4]
    journal.record(mine, "accepted", ready=False)
    journal.record(mine, "started", ready=False)
    journal.turn(mine, TurnStatus.RUNNING)
    writes = journal.take()
    assert [e[0] for e in writes.events] == [4, 5, 6]
    journal.give_back(writes)  # the look-up was refused
    journal.suspend()
    journal.requeue(mine)
    assert journal.last_seq is None
    assert journal.record(queued, "accepted") is None  # held behind ours
    assert journal.know(9) == []  # another process numbers now
    taken = journal.take()
    assert [e[0] for e in taken.events] == [4]  # only what was sent keeps its number
    assert [(t.request_id, t.status, t.started_at) for t in taken.turns] == [
        (mine, TurnStatus.QUEUED, None)
    ]

    others = [TurnEvent(seq, theirs, "started", utcnow(), "{}") for seq in (6, 5, 7)]
    resumed = journal.resume(others, 7)
    assert [e.seq for e in resumed] == [5, 6, 7]
    published = list(journal.publishable())
    assert [(e.seq, e.request_id, e.kind) for e in published] == [
        (8, mine, "accepted"),
        (9, mine, "started"),
        (10, queued, "accepted"),
    ]
    assert [e.seq for e in journal.published_since(4)] == [5, 6, 7, 8, 9, 10]
    assert not journal.suspended and journal.last_seq == 10


def test_resuming_over_a_gap_forgets_the_recent_events() -> None:
    journal = TurnJournal()
    journal.know(0)
    journal.record(uuid.uuid4(), "accepted")
    list(journal.publishable())
    journal.suspend()
    journal.resume([], 50)  # more than one read gives: replays come from the database
    assert journal.oldest_remembered() is None
    assert journal.record(uuid.uuid4(), "accepted").seq == 51  # type: ignore[union-attr]
