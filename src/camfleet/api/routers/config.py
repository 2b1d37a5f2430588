"""The configuration in force (credentials masked), and validating a YAML configuration."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request

from camfleet.config import ConfigError
from camfleet.pipeline.validate import load_config_text

from ..auth import authorize
from ..context import Ctx
from ..issues import issues_of
from ..schemas import Issue, ValidationResult

router = APIRouter(prefix="/api/config", tags=["config"], dependencies=[Depends(authorize)])
VALIDATE_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/yaml": {"schema": {"type": "string"}},
                                                  "text/plain": {"schema": {"type": "string"}}}}}
"""The validate request's body in the OpenAPI document (YAML text; the coordinator's is the same)."""


@router.get("", response_model=dict[str, Any])
def get_config(ctx: Ctx) -> dict[str, Any]:
    """The configuration the node runs, with every credential masked."""
    return ctx.node.current_config().model_dump_public()


@router.post("/validate", response_model=ValidationResult, openapi_extra=VALIDATE_BODY)
async def validate_config(request: Request) -> ValidationResult:
    """Validate a whole YAML configuration (the request body); ``${VAR}``s need not be set.

    Nothing is applied. Issues carry the path, line and column in the text sent;
    every pipeline element's settings are checked by the element's typed model,
    exactly as ``camfleet config check`` does.
    """
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issue = Issue(path="", message=f"not UTF-8 text (byte {exc.start})")
        return ValidationResult(valid=False, issues=[issue])
    return await asyncio.to_thread(validate_config_text, text)


def validate_config_text(text: str) -> ValidationResult:
    """Check a whole node configuration (YAML ``text``) as ``camfleet config check`` does (blocking)."""
    # env={}: the server's environment never leaks into a result
    try:
        load_config_text(text, source="<request>", env={}, require_env=False)
    except ConfigError as exc:
        return ValidationResult(valid=False, issues=issues_of(exc, positions=True))
    except RecursionError:
        return ValidationResult(valid=False, issues=[Issue(path="", message="nested too deeply")])
    return ValidationResult(valid=True)
