"""cluster: the fleet on NATS JetStream — coordinators, agents and camera placement (preview).

Modules, one job each:

* :mod:`.server`: local ``nats-server`` processes (``camfleet nats``, the tests' harness);
* :mod:`.connection`: connecting with URLs, credentials and TLS;
* :mod:`.kv`: the KV store interface (revisions, TTLs, compare-and-set, watch): the NATS seam;
* :mod:`.registry`: bucket, key and subject names, timings, the records;
* :mod:`.identity`: a stable id kept in the data directory;
* :mod:`.hardware`, :mod:`.capacity`: what a node has and what it can do (self-benchmark, cached);
* :mod:`.agent`: registration, heartbeats, status, rejoining; :mod:`.desired`: the node's desired
  state from KV, checked, applied, answered; :mod:`.fence`: the agent's lease (fencing);
* :mod:`.membership`, :mod:`.election`: the rules (pure); :mod:`.elector`, :mod:`.coordinator`: their drivers;
* :mod:`.statefile`: a coordinator's state on disk;
* :mod:`.events_sink`, :mod:`.events_consumer`: the nodes' events to the ``CAMFLEET_EVENTS``
  stream and from it into the central database (:mod:`camfleet.fleetstore.events`);
* :mod:`.placement` (with ``placement_types``, ``placement_pool``, ``placement_history``): where
  each camera runs, pure (no NATS).

It sits above :mod:`camfleet.runtime` and drives a node only through
:class:`~camfleet.runtime.control.NodeControl`. Submodules are imported where
used (``camfleet --help`` stays fast).
"""
