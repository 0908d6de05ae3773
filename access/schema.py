"""How the OpenAPI schema describes access/drf.py's authentication (drf-spectacular extensions,
registered by being defined: AccessConfig.ready imports this module)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "access.drf.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "a token from `manage.py createtoken` (read-only)",
        }


class PasswordScheme(OpenApiAuthenticationExtension):
    target_class = "access.drf.PasswordAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}
