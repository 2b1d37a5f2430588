"""The one SQLAlchemy ``MetaData`` every table of the fleet's central database is declared on."""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
"""Tables of the fleet database (modules of this package add theirs on import)."""
