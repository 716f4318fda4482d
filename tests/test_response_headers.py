"""Protective headers: /docs has a Content-Security-Policy (allowing Swagger UI and its
one inline script, nothing else), no framing and nosniff like /dashboard; every answer
carries nosniff; no answer names the server software or its version."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from support import callback_body


def directives(policy: str) -> dict[str, set[str]]:
    return {
        name: set(values)
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.mark.asyncio
async def test_the_docs_page_has_a_content_security_policy_for_swagger_ui(http, gateway) -> None:
    async with http.get(f"{gateway.url}/docs") as answer:
        assert answer.status == 200
        policy = directives(answer.headers["Content-Security-Policy"])
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
        page = await answer.text()
    assert policy["frame-ancestors"] == {"'none'"}
    assert policy["default-src"] == {"'none'"}
    assert policy["connect-src"] == {"'self'"}  # the document and "Try it out"
    inline = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == {"'self'", f"'sha256-{digest}'"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui.css",
        "/dashboard/static/dashboard.js",
    ],
)
async def test_page_files_are_not_sniffed_or_framed(http, gateway, path) -> None:
    async with http.get(gateway.url + path) as answer:
        assert answer.status == 200
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/api/v1/c2b/payments", 401),
        ("GET", "/api/v1/nothing-here", 404),
        ("DELETE", "/api/v1/auth/token", 405),
        ("POST", "/api/v1/auth/token", 400),
        ("GET", "/dashboard/static/nothing.js", 404),
        ("GET", "/dashboard", 200),
        ("PROPFIND", "/healthz", 405),
    ],
)
async def test_every_answer_is_nosniff_and_names_no_server(
    http, gateway, method, path, status
) -> None:
    async with http.request(
        method, gateway.url + path, headers={"Content-Type": "application/json"}
    ) as answer:
        assert answer.status == status
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "Server" not in answer.headers


@pytest.mark.asyncio
async def test_callback_answers_are_nosniff_and_name_no_server(http, gateway) -> None:
    for path in ("/api/v1/c2b/validation/test-callback", "/api/v1/c2b/validation/wrong"):
        async with http.post(gateway.url + path, json=callback_body()) as answer:
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert "Server" not in answer.headers
