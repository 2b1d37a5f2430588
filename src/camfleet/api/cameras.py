"""Camera edits: staging, the pending diff, building and validating the resulting configuration.

Edits are staged in the store (one row per camera: a config, or None for a
deletion). Applying builds the whole resulting configuration from the one in
force plus the staged edits, validates it with the real configuration loader,
and only then hands it to the node. The cameras applied through the API are
kept in the store (``set_applied_cameras``), and the configuration source
:class:`camfleet.config.sources.OverlaySource` lays them over the file's at
start-up and at every reload, so they survive a restart; a camera deleted
through the API stays deleted even when the file defines it.
"""

from __future__ import annotations

import copy
from typing import Any

from camfleet.config import Config, ConfigError, ConfigIssue
from camfleet.config.sources import camera_dicts
from camfleet.redact import MASK, mask_url
from camfleet.store import Store

MAX_DEPTH = 16  # a camera section nests ~6 levels (zones.NAME.points.N.[x, y])


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than ``limit`` (checked without recursion).

    Raises:
        ConfigError: too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ConfigError([ConfigIssue(where, None, None, f"nested deeper than {limit} levels")])
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def mask_camera(camera: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a camera's config dict with every source URL's credentials masked."""
    if camera is None:
        return None
    out = copy.deepcopy(camera)
    for source in out.get("sources") or []:
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            source["url"] = mask_url(source["url"])
    return out


def unmask_sources(
    camera: dict[str, Any], known: list[dict[str, Any] | None], where: str = ""
) -> dict[str, Any]:
    """``camera`` with masked source URLs (as a GET returned them) replaced by the real ones.

    A URL that still contains the mask but matches none of the ``known``
    configs' URLs is an error: the client must give the credentials again.

    Raises:
        ConfigError: a masked URL that matches no known source.
    """
    out = copy.deepcopy(camera)
    real: dict[str, str] = {}
    for cfg in known:
        for source in (cfg or {}).get("sources") or []:
            if isinstance(source, dict) and isinstance(source.get("url"), str):
                real.setdefault(mask_url(source["url"]), source["url"])
    for i, source in enumerate(out.get("sources") or []):
        url = source.get("url") if isinstance(source, dict) else None
        if isinstance(url, str) and MASK in url:
            if url not in real:
                raise ConfigError([ConfigIssue(
                    f"{where}sources.{i}.url", None, None,
                    "the URL's credentials are masked and match no current source: give them again",
                )])
            source["url"] = real[url]
    return out


def staged_result(base: Config, staged: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """The camera dicts of ``base`` with the ``staged`` edits applied."""
    cameras = camera_dicts(base)
    for name, cfg in staged.items():
        if cfg is None:
            cameras.pop(name, None)
        else:
            cameras[name] = cfg
    return cameras


def applied_after(store: Store, staged: dict[str, dict[str, Any] | None]
                  ) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The store's applied camera set and deleted names once ``staged`` is applied."""
    applied = store.applied_cameras()
    deleted = store.deleted_cameras()
    for name, cfg in staged.items():
        if cfg is None:
            applied.pop(name, None)
            deleted.add(name)
        else:
            applied[name] = cfg
            deleted.discard(name)
    return applied, deleted

