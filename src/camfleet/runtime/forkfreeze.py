"""Imported last by the camera processes' forkserver: moves everything imported so far out of the GC's reach.

Camera processes are forked from the forkserver and share its memory copy-on-write. Python's
garbage collector writes into the header of every container object it examines, so the first
full collection in a child would copy every page holding the forkserver's modules (tens of MiB
per process). :func:`gc.freeze` puts those objects in a permanent generation the collector never
visits, as the :mod:`gc` documentation recommends before ``fork()``. Preloading this module is the
forkserver's only hook that runs after its other preloads and before it forks.
"""

from __future__ import annotations

import gc

gc.collect()  # no garbage frozen in, and the survivors packed before the pages are shared
gc.freeze()
