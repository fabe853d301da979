"""Who may call the service: loopback clients by default, bearer tokens beyond loopback.

The HTTP guide says "no authentication required" for an internal service; we keep that on
loopback (the default bind, 127.0.0.1) and require ``PLATFORM_API_TOKEN`` for anything else:

* an empty or whitespace-only token is no token (it never switches auth on, so an empty
  ``Authorization: Bearer `` header can never be the password, and it never allows a
  non-loopback bind);
* ``mdp serve --host 0.0.0.0`` (any non-loopback address) refuses to start without a token;
* with a token, every ``/data`` call needs ``Authorization: Bearer <token>`` (401 otherwise);
* without one, a request from a non-loopback client is refused (403), even if the process was
  bound to a public address by other means (uvicorn run by hand).
"""

from __future__ import annotations

import hmac
import ipaddress

from resources.settings import PlatformSettings
from resources.validation import InvalidInputError

LOOPBACK_NAMES = {"localhost"}


class AuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def effective_token(settings: PlatformSettings) -> str | None:
    """The configured bearer token, or None when unset, empty or whitespace."""
    if settings.api_token is None:
        return None
    return settings.api_token.get_secret_value().strip() or None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: PlatformSettings) -> None:
    """Refuse a non-loopback bind without a (non-empty) token."""
    if not is_loopback(host) and effective_token(settings) is None:
        raise InvalidInputError(
            f"refusing to listen on {host} without PLATFORM_API_TOKEN (empty or whitespace counts as unset): "
            "set a token, or bind 127.0.0.1"
        )


def check_request(settings: PlatformSettings, authorization: str | None, client_host: str | None) -> None:
    """Raise ``AuthError`` (401/403) unless the request may proceed."""
    token = effective_token(settings)
    if token is None:
        if not is_loopback(client_host):
            raise AuthError(403, "this service has no PLATFORM_API_TOKEN: only loopback clients are served")
        return
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise AuthError(401, "missing or invalid bearer token")
