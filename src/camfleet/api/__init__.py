"""camfleet's REST + WebSocket API and web UI.

* :func:`create_app` builds the FastAPI app of a running node
  (:class:`~camfleet.runtime.control.NodeControl`) and its store;
* :class:`ApiServer` serves it from a thread (uvicorn);
* :func:`overlay_cameras` puts the cameras applied through the API over a
  configuration file's, so they survive a restart.
"""

from .app import create_app
from .cameras import overlay_cameras
from .server import ApiServer

__all__ = ["ApiServer", "create_app", "overlay_cameras"]
