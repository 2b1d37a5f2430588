"""The outbox in a node: a pipeline ``kill -9``'d mid-event has its open events closed at their
last-seen time when it restarts (in the journal, the database and the API's shape)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from camfleet.api.schemas import Event as ApiEvent
from camfleet.config import load_config_text
from camfleet.events import Journal, journal_path
from camfleet.runtime import Node
from camfleet.store import Store
from camfleet.vocabulary import EventMessage, decode
from tests.support.runtime_helpers import EventNotes, States, camera_yaml, config_text

pytestmark = pytest.mark.process


def test_pipeline_killed_mid_event_has_its_open_events_closed_at_last_seen(
        tmp_path: Path, shm_dir: Path) -> None:
    config = load_config_text(config_text(tmp_path, camera_yaml("a", 0)))
    store = Store.open(config.database_url)
    node = Node(config, store=store)
    node.start()
    states, events = States(node), EventNotes(node)
    path = journal_path(config.data_path)
    try:
        states.wait("a", "healthy", 60)
        started = events.wait(lambda n: n["event_type"] == "start" and n["event"]["camera"] == "a", 60)
        event_id = started["event"]["id"]
        with Journal(path) as journal:
            assert event_id in journal.open_events("a"), "the event ended before the kill: rerun"
            seen_before = journal.open_events("a")[event_id]
        pid = node.processes()["a/pipeline"]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        # the restarted pipeline closes the event first thing: an end note through the outbox
        ended = events.wait(lambda n: n["event_type"] == "end" and n["event"]["id"] == event_id, 30)
        assert node.processes()["a/pipeline"] != pid
        assert seen_before <= ended["event"]["end"] <= killed_at
        assert ended["event"]["data"]["closed"] == "process ended"
        assert node.flush_events(20)
        with Journal(path) as journal:
            assert event_id not in journal.open_events()
            ends = [decode(e.body) for e in journal.entries("event") if e.key == event_id]
        last = ends[-1]
        assert isinstance(last, EventMessage) and last.type == "end"
        stored = store.get_event(event_id)
        assert stored is not None and stored.end == pytest.approx(last.event.end)
        assert stored.end == pytest.approx(ended["event"]["end"])
        api = ApiEvent.of(stored)
        assert api.end == stored.end and api.model_dump() == ended["event"] | {
            "has_snapshot": api.has_snapshot, "top_score": api.top_score, "zones": api.zones,
            "reviewed": api.reviewed}  # a user's review lives in the store, not in the camera's notes
    finally:
        events.unsubscribe()
        states.close()
        node.stop()
        store.close()
