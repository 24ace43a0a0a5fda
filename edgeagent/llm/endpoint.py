"""Where the cloud LLM may be, and where its key may go.

The local config (provisioning) is trusted: its ``llm.cloud_base_url`` may be any http(s) URL, and
the API key is bound to that URL's origin (``llm.cloud_api_key_origin``).  A fleet may move the
endpoint only within ``llm.cloud_allowed_hosts``, also set locally: bare host names (``api.openai.com``)
or ``*.suffix`` patterns allow https on any port; a full origin (``http://10.0.0.5:8080``) allows exactly
that origin, http included.  Loopback, link-local, private and cloud-metadata addresses are never
reached through a ``*.`` pattern, only when listed exactly.  A key never leaves for another origin,
even an allowed one: an allowed host is a place to send prompts, not the key's owner.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA_NAMES = ("metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an endpoint at all (any config, local or remote); None when it is one or empty."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in SCHEMES:
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    return None


def origin(url: str) -> str:
    """``https://API.openai.com/v1`` -> ``https://api.openai.com:443``; "" when ``url`` is no endpoint."""
    if not url or url_problem(url):
        return ""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or DEFAULT_PORTS[parts.scheme]}"


def special_host(host: str) -> bool:
    """Loopback, link-local, private, unspecified or multicast addresses, and metadata service names."""
    host = host.rstrip(".").lower()
    if host in METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (address.is_loopback or address.is_link_local or address.is_private or address.is_unspecified
            or address.is_multicast or address.is_reserved)


def remote_endpoint_problem(url: str, allowed: list[str]) -> str | None:
    """Why a fleet may not set ``llm.cloud_base_url`` to ``url``; never quotes the URL (it may carry
    credentials), names the rule instead."""
    why = url_problem(url)
    if why or not url:
        return why
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    host = (parts.hostname or "").rstrip(".").lower()
    wanted = origin(url)
    for entry in allowed:
        entry = entry.strip().lower()
        if "://" in entry:
            if origin(entry) == wanted:
                return None
            continue
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:]) and not special_host(host)):
            return None if parts.scheme == "https" else "must use https (only origins listed in full may use http)"
    return "this host is not in the device's llm.cloud_allowed_hosts (set in its local config)"
