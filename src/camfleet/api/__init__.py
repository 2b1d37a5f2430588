"""camfleet's REST + WebSocket API and web UI.

* :func:`create_app` builds the FastAPI app of a running node
  (:class:`~camfleet.runtime.control.NodeControl`) and its store;
* :class:`ApiServer` serves it from a thread (uvicorn).

The cameras applied through the API are laid over the configuration file's by
a configuration source, :class:`camfleet.config.sources.OverlaySource`.
"""

from .app import create_app
from .server import ApiServer

__all__ = ["ApiServer", "create_app"]
