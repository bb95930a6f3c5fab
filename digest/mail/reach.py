"""Whether the links a digest carries can reach its readers: BASE_URL as the mail shows it.

Every link of a digest (the articles, the web copy, unsubscribe, manage) is
built from BASE_URL. Left at its default (this machine) the messages go out
fine and every link in them is dead for the reader; over plain http, the large
mail providers ignore the one-click unsubscribe (RFC 8058 wants https). Both
are legitimate while trying digest out, so they are warnings, not errors.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def base_url_warnings(base_url: str) -> list[str]:
    """What is wrong with BASE_URL for mail that leaves this machine (empty: nothing)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if _is_loopback(host):
        return [f"BASE_URL is {base_url}: every link in the digest (articles, unsubscribe) "
                "leads to this machine, not to the readers; set BASE_URL to the public "
                "address of the site before mailing anyone"]
    if parts.scheme == "http":
        return [f"BASE_URL is {base_url}, plain http: mail providers (Gmail, Yahoo) offer "
                "one-click unsubscribe only for https links; serve the site over https and "
                "set BASE_URL to that address"]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
