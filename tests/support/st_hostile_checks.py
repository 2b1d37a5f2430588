"""Schemathesis checks: hostile Host or Origin, credentials in responses (loaded by SCHEMATHESIS_HOOKS).

Not a test module: ``tests/test_api_security.py`` runs the schemathesis CLI
with ``SCHEMATHESIS_HOOKS=tests.support.st_hostile_checks``.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@schemathesis.check
def foreign_host_is_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every request sent with a foreign Host answers 421, whatever its path, method or body."""
    if response.status_code != 421:
        raise AssertionError(f"{case.method} {case.path}: {response.status_code} with a foreign Host")
    return None


@schemathesis.check
def cross_site_write_is_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every write sent with a foreign Origin answers 403; reads never fail with a server error."""
    if case.method.upper() not in SAFE and response.status_code != 403:
        raise AssertionError(f"{case.method} {case.path}: {response.status_code} with a foreign Origin")
    if response.status_code >= 500:
        raise AssertionError(f"{case.method} {case.path}: {response.status_code}")
    return None


@schemathesis.check
def query_secret_never_returned(ctx: Any, response: Any, case: Any) -> bool | None:
    """No response carries the query-string credential of ``$CAMFLEET_FUZZ_SECRET`` in clear."""
    secret = os.environ["CAMFLEET_FUZZ_SECRET"].encode()
    if secret in response.content:  # bytes: images and clips are not text
        raise AssertionError(f"{case.method} {case.path}: the camera's query-string password is returned")
    return None
