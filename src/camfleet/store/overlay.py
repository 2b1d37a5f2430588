"""The store as the configuration's camera overlay, with store failures told as overlay failures.

:class:`StoreOverlay` implements :class:`camfleet.config.sources.CameraOverlay`
over a :class:`~camfleet.store.Store`: a lost key or a database outage becomes
:class:`~camfleet.config.sources.OverlayUnavailable` (the cameras that could be
read travel with it), so the node keeps running the file's cameras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from camfleet.config.sources import OverlayUnavailable
from camfleet.store.credentials import UnreadableCameras
from camfleet.store.errors import StoreError

if TYPE_CHECKING:
    from camfleet.store.store import Store

__all__ = ["StoreOverlay"]


class StoreOverlay:
    """Cameras applied and deleted through the API, read from ``store``; errors as OverlayUnavailable."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def applied_cameras(self) -> dict[str, dict[str, Any]]:
        """Applied camera configs by name, credentials decrypted (internal use only: never log it)."""
        try:
            return self.store.applied_cameras()
        except UnreadableCameras as exc:
            raise OverlayUnavailable(str(exc), {r.name: r.config for r in exc.readable}, exc.names) from None
        except StoreError as exc:
            raise OverlayUnavailable(f"cameras applied through the API are not loaded: {exc}") from None

    def deleted_cameras(self) -> set[str]:
        """Names of the cameras deleted through the API."""
        try:
            return self.store.deleted_cameras()
        except StoreError as exc:
            raise OverlayUnavailable(f"cameras deleted through the API are not known: {exc}") from None
