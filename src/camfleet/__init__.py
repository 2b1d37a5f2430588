"""camfleet: AI video analytics for a fleet of cameras.

Decode each camera once, share frames and packets zero-copy through
shared-memory rings (:mod:`camfleet.framebus`), isolate and heal every camera.
"""

__version__ = "0.1.0"
