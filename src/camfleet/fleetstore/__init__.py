"""The fleet's central database: cameras staged and applied, nodes, assignments, status, events.

One database for all coordinators (PostgreSQL in production, SQLite for a
single coordinator), reached through SQLAlchemy with the node store's URL
handling (:mod:`camfleet.store.engine`). Every table is declared on
:data:`camfleet.fleetstore.schema.metadata`.
"""
