"""The camera simulator: N RTSP cameras showing real photographs in motion, with fault injection.

* :class:`Scene` (from :mod:`camfleet.ingest.scene`, which ``synthetic://``
  cameras use too) renders frames where photographs move over a static
  background, with their ground-truth boxes.
* :class:`SimServer` serves :class:`CameraSpec` cameras with GStreamer's
  gst-rtsp-server (H.264 / H.265), and injects faults: stop / restart, stall,
  resolution switch, packet corruption, credentials.

The server runs under Debian's ``/usr/bin/python3`` with these packages::

    apt-get install -y --no-install-recommends gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \\
        gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly python3-gi

(``scripts/setup.sh`` installs them); :class:`SimError` says so when they are missing.
"""

from camfleet.ingest.scene import OBJECTS, Box, Scene, rgb_to_i420

from .server import APT_HINT, CameraSpec, SimError, SimServer

__all__ = ["APT_HINT", "OBJECTS", "Box", "CameraSpec", "Scene", "SimError", "SimServer", "rgb_to_i420"]
