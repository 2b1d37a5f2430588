"""Bearer-token authentication and the two roles.

``admin`` may do everything; ``viewer`` may read (GET/HEAD) and use the
WebSocket. A token comes in the ``Authorization: Bearer`` header; browsers
cannot add headers to ``<img>``/``<video>`` requests, so reads also accept the
``camfleet_token`` cookie (reads only, so a forged cross-site form can never
write), and the WebSocket accepts ``?token=``. Without a valid token: 401; a
viewer writing: 403. ``api.open`` (loopback only) lets loopback clients in as
admin without a token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .context import LOOPBACK_HOSTS, ApiContext, Ctx

log = logging.getLogger("camfleet.api")

Role = Literal["admin", "viewer"]
COOKIE = "camfleet_token"
READ_METHODS = frozenset({"GET", "HEAD"})
_MAX_TOKEN_CHARS = 512

PRINCIPAL_SCOPE = "camfleet.principal"
"""ASGI scope key where a middleware that authenticated the request itself (the agent's cluster
guard) leaves its :class:`Principal`; clients cannot set scope keys."""

bearer = HTTPBearer(auto_error=False, description="a token from `camfleet token create`")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (``open`` in open mode) and its role."""

    name: str
    role: Role


def _check(ctx: ApiContext, token: str | None, client_host: str | None) -> Principal | None:
    if ctx.open and (client_host is None or client_host in LOOPBACK_HOSTS):
        return Principal("open", "admin")
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    try:
        row = ctx.store.verify_token(token)
    except Exception:  # a store failure must not turn into a 500 that echoes anything
        log.exception("token check failed")
        return None
    if row is None or row.role not in ("admin", "viewer"):
        return None
    role: Role = "admin" if row.role == "admin" else "viewer"
    return Principal(row.name, role)


def _unauthorized() -> HTTPException:
    return HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


def authorize(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """FastAPI dependency: the caller, allowed to make this request (401/403 otherwise)."""
    token = credentials.credentials if credentials is not None else None
    read = request.method in READ_METHODS
    if token is None and read:
        token = request.cookies.get(COOKIE)
    principal = _check(ctx, token, request.client.host if request.client else None)
    if principal is None:
        raise _unauthorized()
    if not read and principal.role != "admin":
        raise HTTPException(403, "this token may only read (role viewer)")
    request.state.principal = principal
    return principal


def authorize_ws(websocket: WebSocket, ctx: ApiContext) -> Principal | None:
    """The caller of a WebSocket (any role may connect), or None."""
    known = websocket.scope.get(PRINCIPAL_SCOPE)
    if isinstance(known, Principal):
        return known
    token = websocket.query_params.get("token")
    header = websocket.headers.get("authorization", "")
    if not token and header[:7].lower() == "bearer ":
        token = header[7:].strip()
    if not token:
        token = websocket.cookies.get(COOKIE)
    return _check(ctx, token, websocket.client.host if websocket.client else None)
