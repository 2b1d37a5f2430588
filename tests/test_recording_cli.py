"""``camfleet storage``: check/repair, usage, retention, export and event clips, on a real store."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from camfleet.cli.storage import app, parse_time
from camfleet.config import RecordSettings, load_config
from camfleet.recording import Recorder, StoreSink
from camfleet.store import EventRecord, Store, StoreWriter

from .support.recording import T0, encode, feed

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A config file, and 8 s of one camera recorded through StoreSink into its store."""
    cfg_path = tmp_path / "camfleet.yaml"
    cfg_path.write_text(f"""
data_dir: {tmp_path / "data"}
pipelines: {{p: [motion: {{}}]}}
cameras:
  door: {{pipeline: p, sources: [{{url: "synthetic://door", roles: [detect, record]}}]}}
""")
    cfg = load_config(cfg_path)
    store = Store.open(cfg.database_url)
    writer = StoreWriter(store)
    writer.start()
    packets, extra = encode("libx264", 160, 90, 120)
    rec = Recorder("door", RecordSettings(segment_seconds=2), cfg.recordings_path, StoreSink(writer))
    feed(rec, packets, extra)
    rec.finish_segment()
    assert writer.flush(10)
    writer.stop()
    store.upsert_event(EventRecord(id="ev1", camera="door", label="person", start=T0 + 3.2, end=T0 + 4.1))
    store.close()
    return cfg_path


def test_check_usage_and_repair(node: Path) -> None:
    result = runner.invoke(app, ["check", str(node)])
    assert result.exit_code == 0, result.output
    assert "4 rows, 4 files" in result.output and "ok" in result.output
    result = runner.invoke(app, ["usage", str(node)])
    assert result.exit_code == 0 and re.search(r"door\s+4\s", result.output), result.output
    victim = next((node.parent / "data" / "recordings").rglob("*.mp4"))
    victim.unlink()
    result = runner.invoke(app, ["check", str(node)])
    assert result.exit_code == 1 and "missing file" in result.output
    result = runner.invoke(app, ["check", "--repair", str(node)])
    assert result.exit_code == 0 and "1 rows deleted" in result.output
    assert runner.invoke(app, ["check", str(node)]).exit_code == 0


def test_export_and_event_clip(node: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "clip.mp4"
    result = runner.invoke(app, ["export", "door", str(T0 + 1.5), "2023-11-14T22:13:25.5Z", str(out),
                                 "--config", str(node)])
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 68  # from the keyframe at 1.0 s up to 5.5 s: 4.5 s at 15 fps, rounded up
    result = runner.invoke(app, ["event-clip", "ev1", str(tmp_path / "ev.mp4"), "--pre", "1", "--post", "1",
                                 "--config", str(node)])
    assert result.exit_code == 0 and "wrote" in result.output, result.output
    result = runner.invoke(app, ["event-clip", "nope", str(tmp_path / "x.mp4"), "--config", str(node)])
    assert result.exit_code == 1 and "unknown event 'nope'" in result.output
    result = runner.invoke(app, ["export", "door", "yesterday", "1", str(tmp_path / "x.mp4"),
                                 "--config", str(node)])
    assert result.exit_code == 2 and "neither ISO 8601" in result.output


def test_retention_command(node: Path) -> None:
    text = node.read_text().replace("roles: [detect, record]}]}",
                                    "roles: [detect, record]}], record: {retain_days: {continuous: 0}}}")
    node.write_text(text)
    result = runner.invoke(app, ["retention", str(node)])
    assert result.exit_code == 0, result.output
    assert "4 segments deleted" in result.output


def test_parse_time() -> None:
    assert parse_time("1800000000.5") == 1800000000.5
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T23:13:20+01:00") == T0
