"""``/api/config`` on the coordinator: the fleet's configuration, and checking one as apply would.

``GET /api/config`` is the coordinators' base configuration with the fleet's applied
cameras (credentials masked): what every camera runs with. ``POST /api/config/validate``
takes YAML: a fleet document (only ``cameras:``, each camera with optional ``placement``
hints) is checked exactly as the leader's apply checks it (against the base, with
placement hints); any other document is checked as a node checks a whole configuration.
Nothing is applied. Issues carry the path, and the line and column in the text sent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request

from camfleet.cluster.fleetconfig import FleetConfigError, default_base, validate_fleet
from camfleet.config import Config, ConfigError
from camfleet.config.load import ConfigIssue, Positions, parse_yaml
from camfleet.config.sources import with_cameras
from camfleet.pipeline.validate import element_catalog

from ..auth import authorize
from ..routers.config import VALIDATE_BODY, validate_config_text
from ..schemas import Issue, ValidationResult
from .context import Fleet

log = logging.getLogger("camfleet.api.fleet")

router = APIRouter(prefix="/api/config", tags=["config"], dependencies=[Depends(authorize)])
_PART = re.compile(r"[^.\[\]]+|\[(\d+)\]")


@router.get("", response_model=dict[str, Any])
async def get_config(ctx: Fleet) -> dict[str, Any]:
    """The fleet's configuration: the base with every applied camera, every credential masked."""
    return (await asyncio.to_thread(ctx.node.current_config)).model_dump_public()


def _where(path: str, positions: Positions) -> tuple[int | None, int | None]:
    """Line and column in the text sent of an issue's ``path`` (``cameras.door.sources[0].url``)."""
    parts: list[str | int] = [int(m.group(1)) if m.group(1) else m.group(0) for m in _PART.finditer(path)]
    found = positions.find(tuple(parts), at_key=True) if parts else None
    return found if found is not None else (None, None)


def _fleet_issue(text: str, positions: Positions) -> Issue:
    path, sep, message = text.partition(": ")
    if not sep or " " in path:
        return Issue(path="cameras", message=text)
    line, column = _where(path, positions)
    return Issue(path=path, message=message, line=line, column=column)


def validate_text(text: str, base: Config | None) -> ValidationResult:
    """Check ``text`` (YAML): a fleet document as apply does, anything else as a node does (blocking)."""
    data, positions, issues, _secrets = parse_yaml(text, env={}, require_env=False)
    if issues:
        return ValidationResult(valid=False, issues=[
            Issue(path=i.path, message=i.message, line=i.line, column=i.column) for i in issues])
    if not (isinstance(data, dict) and set(data) == {"cameras"}):
        return validate_config_text(text)
    try:
        validate_fleet(data["cameras"], base)
    except FleetConfigError as exc:
        found = _fleet_issues(data["cameras"], base, exc.issues, positions)
        return ValidationResult(valid=False, issues=found)
    except RecursionError:
        return ValidationResult(valid=False, issues=[Issue(path="", message="nested too deeply")])
    return ValidationResult(valid=True)


def _fleet_issues(cameras: dict[str, Any], base: Config | None, texts: list[str],
                  positions: Positions) -> list[Issue]:
    """Apply's issues (``texts``) with the node loader's structure where it has one (suggestions).

    The settings' issues come from the node's loader, which keeps the suggestion apart; it is
    run again on the settings alone to get them whole. Placement and name issues stay text.
    """
    settings = {n: {k: v for k, v in raw.items() if k != "placement"} for n, raw in cameras.items()
                if isinstance(n, str) and isinstance(raw, dict)}
    structured: dict[str, ConfigIssue] = {}
    try:
        with_cameras(base or default_base(), settings, elements=element_catalog())
    except ConfigError as exc:
        structured = {replace(i, line=None, column=None).format(): i for i in exc.issues}  # as apply words it
    except RecursionError:
        pass
    out = []
    for text in texts:
        found = structured.get(text)
        if found is None:
            out.append(_fleet_issue(text, positions))
            continue
        line, column = _where(found.path, positions)
        out.append(Issue(path=found.path, message=found.message, suggestion=found.suggestion, line=line,
                         column=column))
    return out


@router.post("/validate", response_model=ValidationResult, openapi_extra=VALIDATE_BODY)
async def validate_config(request: Request, ctx: Fleet) -> ValidationResult:
    """Validate YAML (the request body) as the fleet's apply would; ``${VAR}``s need not be set.

    A document with only ``cameras:`` is a fleet configuration: each camera is checked
    against the coordinators' base configuration, with its ``placement`` hints. Any
    other document is checked as a node's whole configuration. Nothing is applied.
    """
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issue = Issue(path="", message=f"not UTF-8 text (byte {exc.start})")
        return ValidationResult(valid=False, issues=[issue])
    return await asyncio.to_thread(validate_text, text, ctx.base)
