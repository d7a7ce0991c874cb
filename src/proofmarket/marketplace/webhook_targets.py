"""Where a webhook may be POSTed: http(s) URLs whose host resolves to public addresses only (loopback, private,
link-local and reserved ones refused, also inside IPv6 forms that carry an IPv4 address), the connection pinned to
the address checked (no DNS rebinding between the check and the POST); private targets only when
PROOFMARKET_WEBHOOK_PRIVATE_TARGETS allows them (auto: on a development chain)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proofmarket.core.errors import UsageError
from proofmarket.core.settings import Settings, known_devnet

MAX_URL = 2000


class WebhookTargetRefused(UsageError, code="webhook_target_refused", http_status=422):
    """The URL is not http(s), or names a loopback or private address this node does not POST to."""


def private_allowed(settings: Settings) -> bool:
    if settings.owners.webhook_private_targets == "auto":
        return known_devnet(settings)
    return settings.owners.webhook_private_targets == "on"


NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a network's own translator


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global address, and for IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) the IPv4 one too."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local or address in LOCAL_NAT64:
            return False
        if int(address) >> 32 == 0:  # ::a.b.c.d (IPv4-compatible, deprecated): its IPv4 address decides
            return ipaddress.IPv4Address(int(address)).is_global
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not inner.is_global:
            return False
    return True


def pinned(url: str, allow_private: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Where to POST ``url``: (the URL with its host replaced by the address checked, the Host header, httpx's
    extensions naming the TLS server name). The name is resolved once, here, and the connection goes to the address
    that was checked, so a DNS answer that changes between the check and the connection (rebinding) reaches
    nothing private. With private targets allowed (the devnet): the URL as it is."""
    check_target(url, allow_private, resolve=False)
    if allow_private:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookTargetRefused(f"the webhook host {host} does not resolve ({exc})") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not public(address):
            raise WebhookTargetRefused(f"the webhook host {host} is a loopback, private or reserved address "
                                       f"({address}): this node does not POST there")
    if not addresses:
        raise WebhookTargetRefused(f"the webhook host {host} does not resolve")
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host_header}, extensions


def check_target(url: str, allow_private: bool, *, resolve: bool = True) -> str:
    """The URL, if this node may POST to it; ``WebhookTargetRefused`` otherwise."""
    if len(url) > MAX_URL:
        raise WebhookTargetRefused(f"the webhook URL is longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused("a webhook URL is http:// or https:// with a host")
    if parts.username or parts.password:
        raise WebhookTargetRefused("a webhook URL carries no credentials")
    if allow_private or not resolve:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise WebhookTargetRefused(f"the webhook host {parts.hostname} does not resolve ({exc})") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not public(address):
            raise WebhookTargetRefused(f"the webhook host {parts.hostname} is a loopback, private or reserved address "
                                       f"({address}): this node does not POST there")
    return url
