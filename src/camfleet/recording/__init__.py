"""Recording: MP4 segments remuxed from the packet ring, retention, and clip export.

* :class:`Recorder` / :func:`recorder_main`: one camera's packet ring into
  segments ``<recordings_dir>/<camera>/<YYYY-MM-DD>/<HH>/<start-ms>.mp4``
  (UTC), announced as ``{"kind": "segment", ...}`` messages to a sink.
* :class:`RetentionManager`: deletes segments by mode, age and the storage
  floor, never footage of a retained event; :func:`check_storage` reconciles
  rows and files, moving what it cannot index to ``.quarantine/`` (never deleting).
* :func:`export_clip` / :func:`event_clip`: clips cut at keyframes, by remux.

Nothing here decodes or re-encodes video.
"""

from .check import SegmentProbe, StorageReport, check_storage, probe_segment
from .export import ClipInfo, ExportError, event_clip, export_clip
from .paths import UnsafePath, safe_join, segment_relpath
from .quarantine import QUARANTINE_DIR, QuarantineUsage, quarantine, quarantine_usage
from .recorder import Recorder, RecorderStats, Sink, recorder_main, segment_message
from .recover import RecoveryReport, recover_parts
from .retention import Deletion, RetentionManager, RetentionReport, disk_free_bytes
from .segment import SegmentInfo, SegmentWriter
from .sink import StoreSink

__all__ = [
    "ClipInfo",
    "Deletion",
    "ExportError",
    "QUARANTINE_DIR",
    "QuarantineUsage",
    "Recorder",
    "RecorderStats",
    "RecoveryReport",
    "RetentionManager",
    "RetentionReport",
    "SegmentInfo",
    "SegmentProbe",
    "SegmentWriter",
    "Sink",
    "StorageReport",
    "StoreSink",
    "UnsafePath",
    "check_storage",
    "disk_free_bytes",
    "event_clip",
    "export_clip",
    "probe_segment",
    "quarantine",
    "quarantine_usage",
    "recorder_main",
    "recover_parts",
    "safe_join",
    "segment_message",
    "segment_relpath",
]
