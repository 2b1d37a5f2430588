"""ingest: open each camera once, publish its packets and decoded frames, heal.

* :class:`IngestWorker` runs one camera's reconnect state machine.
* :func:`probe` describes a camera (codec, size, fps, keyframe interval).
* URLs are masked everywhere (:func:`camfleet.redact.mask_url`); errors are
  classified (:class:`IngestError`, :class:`ErrorKind`).
"""

from camfleet.urlkinds import SourceKind, source_kind

from .backoff import Backoff
from .convert import OutputSpec
from .errors import ErrorKind, IngestError, classify
from .probe import ProbeResult, probe
from .source import SourceOptions
from .status import IngestState, IngestStatus
from .tls import TlsOptions
from .worker import IngestConfig, IngestWorker

__all__ = [
    "Backoff",
    "ErrorKind",
    "IngestConfig",
    "IngestError",
    "IngestState",
    "IngestStatus",
    "IngestWorker",
    "OutputSpec",
    "ProbeResult",
    "SourceKind",
    "SourceOptions",
    "TlsOptions",
    "classify",
    "probe",
    "source_kind",
]
