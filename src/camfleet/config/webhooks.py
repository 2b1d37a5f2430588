"""The ``webhooks:`` section: where the node POSTs its events, which ones, and how it signs them.

Each entry is one hook, delivered from the node's durable outbox with its own cursor
(``webhook:<name>``), so ``name`` must stay stable. What the receiver gets and how it
verifies it is in ``docs/webhooks.md``. A literal link-local or metadata address in ``url``
is refused here; a name that resolves to one is refused when a message is sent
(:mod:`camfleet.netpolicy`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from camfleet.netpolicy import classify, is_metadata_name, literal_address, refusal

from .base import CameraName, Name, _Strict

__all__ = ["RESERVED_HEADERS", "WebhookConfig", "WebhookList"]

HOOK_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,63}$"
_HOOK_NAME = re.compile(HOOK_NAME_PATTERN)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")  # an RFC 9110 token

RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "host", "transfer-encoding", "connection", "user-agent",
    "idempotency-key", "x-camfleet-hook", "x-camfleet-event", "x-camfleet-timestamp",
    "x-camfleet-signature",
})
"""Headers the node sets itself (lower case); ``headers:`` may not replace them."""

EventType = Literal["start", "update", "end"]


def _hook_name(name: str) -> str:
    if not _HOOK_NAME.match(name):
        raise PydanticCustomError(
            "hook_name", "invalid webhook name: use 1-63 letters, digits, '_', '.' or '-' (it keys the "
                         "hook's delivery cursor; keep it stable)")
    return name


def _header_value(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise PydanticCustomError("header_value", "a header value may not contain a line break or NUL")
    return value


HookName = Annotated[str, AfterValidator(_hook_name),
                     WithJsonSchema({"type": "string", "pattern": HOOK_NAME_PATTERN})]
HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_header_value)]


class WebhookConfig(_Strict):
    """One webhook: an HTTP(S) receiver of the node's event messages, signed with ``secret``."""

    name: HookName = Field(description="unique and stable: it keys the hook's delivery cursor")
    url: str = Field(min_length=1, max_length=2048, repr=False,
                     description="http:// or https:// receiver; credentials in it are sent as basic auth "
                                 "and never logged")
    secret: str = Field(min_length=16, max_length=1024, repr=False,
                        description="HMAC-SHA256 key of the X-Camfleet-Signature header (at least 16 "
                                    "characters; e.g. ${WEBHOOK_SECRET})")
    events: list[EventType] = Field(default_factory=lambda: list[EventType](("start", "end")), min_length=1,
                                    description="which event messages to send: start, update, end")
    cameras: list[CameraName] = Field(default_factory=list, description="only these cameras (all if empty)")
    labels: list[Name] = Field(default_factory=list, description="only these labels (all if empty)")
    zones: list[Name] = Field(default_factory=list,
                              description="only events that entered one of these zones (all if empty)")
    headers: dict[Annotated[str, Field(pattern=_HEADER_NAME.pattern)], HeaderValue] = Field(
        default_factory=dict, max_length=32, repr=False,
        description="extra request headers (e.g. Authorization); values are never logged")
    timeout_s: float = Field(default=10.0, gt=0, le=120,
                             description="seconds to connect, send and get the answer; past it the "
                                         "delivery is retried")
    retry_initial_s: float = Field(default=1.0, gt=0, le=3600,
                                   description="first wait after a failed delivery, seconds (doubles)")
    retry_max_s: float = Field(default=300.0, gt=0, le=86400, description="longest wait between retries, s")
    allow_private: bool = Field(default=True,
                                description="allow private-network and loopback receivers (the LAN)")
    allow_link_local: bool = Field(default=False,
                                   description="allow link-local and cloud metadata addresses "
                                               "(169.254.0.0/16, fe80::/10, 169.254.169.254, ...)")

    @model_validator(mode="after")
    def _checked(self) -> WebhookConfig:
        problem = self._url_problem()
        if problem is not None:
            problem = f"url {problem}"
        for header in self.headers:
            if header.lower() in RESERVED_HEADERS:
                problem = f"header {header!r} is set by camfleet itself"
        if len(set(self.events)) != len(self.events):
            problem = "events lists a type twice"
        if self.retry_max_s < self.retry_initial_s:
            problem = "retry_max_s is below retry_initial_s"
        if problem is not None:
            raise PydanticCustomError("webhook", "{text}", {"text": f"webhook {self.name!r}: {problem}"})
        return self

    def _url_problem(self) -> str | None:
        """What is wrong with ``url`` (never quoting it: it may hold credentials), or None."""
        try:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            _ = parts.port  # raises ValueError for a port out of range
        except ValueError:
            return "is not a valid URL"
        if parts.scheme not in ("http", "https"):
            return "must start with http:// or https://"
        if not host:
            return "has no host"
        if parts.fragment:
            return "may not have a #fragment"
        if any(c.isspace() for c in self.url):
            return "may not contain white space"
        if is_metadata_name(host):
            return (f"names the cloud metadata service {host!r}; set allow_link_local: true if you mean it"
                    if not self.allow_link_local else None)
        ip = literal_address(host)
        if ip is None:
            return None  # a name: checked each time it is resolved
        why = refusal(classify(ip), allow_private=self.allow_private, allow_link_local=self.allow_link_local)
        return None if why is None else f"points at {ip}: {why}"


def _unique_names(hooks: list[WebhookConfig]) -> list[WebhookConfig]:
    seen: set[str] = set()
    for hook in hooks:
        if hook.name in seen:
            raise PydanticCustomError("webhook_name", "{text}", {
                "text": f"two webhooks are called {hook.name!r} (names key their delivery cursors: make them "
                        "unique)"})
        seen.add(hook.name)
    return hooks


WebhookList = Annotated[list[WebhookConfig], Field(max_length=64), AfterValidator(_unique_names)]
"""The ``webhooks:`` section: at most 64 hooks with unique names."""
