"""``FleetConfigView``: the fleet's configuration as one node configuration (base + applied cameras).

It offers ``current_config()`` as a node does, so the node API's pieces that read
the configuration in force (Frigate compatibility's switch and shapes, clip spans)
serve the coordinator unchanged. It is rebuilt when an apply changed the fleet
(the ``generation`` counter), else reused.
"""

from __future__ import annotations

import logging
import threading

from camfleet.cluster.fleetconfig import default_base
from camfleet.config import Config, ConfigError
from camfleet.config.sources import with_cameras
from camfleet.fleetstore.store import FleetStore
from camfleet.pipeline.validate import element_catalog

log = logging.getLogger("camfleet.api.fleet")


class FleetConfigView:
    """The base configuration (``--base-config``; None: the embedded default) with the fleet's cameras."""

    def __init__(self, store: FleetStore, base: Config | None) -> None:
        self.store = store
        self.base = base
        self._lock = threading.Lock()
        self._cached: tuple[int, Config] | None = None

    def current_config(self) -> Config:
        """The fleet's configuration now (blocking: reads the database; rebuilt after each apply)."""
        generation = self.store.counter("generation")
        with self._lock:
            if self._cached is not None and self._cached[0] == generation:
                return self._cached[1]
        built = self._build()
        with self._lock:
            self._cached = (generation, built)
        return built

    def _build(self) -> Config:
        base = self.base or default_base()
        cameras = {name: cam.settings for name, cam in self.store.cameras().items()}
        if not cameras:
            return base
        try:
            return with_cameras(base, cameras, elements=element_catalog())
        except ConfigError:  # applied on the leader's base; this coordinator's base may differ
            log.warning("the fleet's cameras do not load on this coordinator's base configuration",
                        exc_info=True)
            return base
