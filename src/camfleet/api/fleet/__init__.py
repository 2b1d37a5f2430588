"""The coordinator's API: the node API's paths and shapes for every camera of the fleet (decision 0009)."""

from .app import create_fleet_app

__all__ = ["create_fleet_app"]
