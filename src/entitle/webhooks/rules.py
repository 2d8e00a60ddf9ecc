"""Where webhooks may be sent: pure rules, no I/O (resolution happens in `delivery.py`); and which
customer an event is about.

A webhook URL is chosen by whoever holds a server key, and Entitle POSTs to it from inside the
operator's network: without a policy it is a request forgery tool (cloud metadata at 169.254.169.254,
an admin port on localhost, the database next door). So:

- the URL must be https; plain http only to a loopback host, and only with the allow-private setting
  (`ENTITLE_WEBHOOKS_ALLOW_PRIVATE=true`, for local development and tests);
- an internationalized host name is stored, shown, checked and called in its ASCII (IDNA) form, so
  what the console shows is what is called and the rules below judge the name that is resolved; a
  name that is not valid IDNA is refused;
- the address connected to must be a public unicast one: never loopback, private, shared (CGNAT),
  link-local, multicast, reserved, unspecified or documentation space — including such an address
  embedded in IPv6 (IPv4-mapped, NAT64, 6to4, Teredo). The allow-private setting lifts this for
  loopback/private/link-local, never for multicast or unspecified addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IANA special-purpose blocks no receiver lives in, whatever this Python's `is_global` says of them.
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
    )
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_refusal(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why a webhook may not be delivered to `ip` (a short reason), or None when it may."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = address_refusal(inner, allow_private=allow_private)
            return None if reason is None else f"{reason} (embedded in {ip})"
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or any(ip in net for net in _SPECIAL_PURPOSE if net.version == ip.version):
        return "a reserved address"
    if not ip.is_global:
        return "an address that is not globally routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally: `10.0.0.1`, `[::1]`, and the legacy IPv4 spellings
    resolvers accept (`2130706433`, `0x7f.1`, `0177.0.0.1`); None for a host name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[-1] != ".":
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = literal_address(host)
    return ip is not None and ip.is_loopback


def ascii_host(host: str) -> str:
    """The host name as DNS, TLS and the Host header get it: an internationalized name in its IDNA
    (punycode) form, mapped by UTS #46 as browsers map it (case, full-width forms, ideographic full
    stops), each non-ASCII label an IDNA 2008 A-label (`faß` is `xn--fa-hia`, never IDNA 2003's `fass`,
    which Python's own codec would ask for). An ASCII name is left as typed, but an `xn--` label in it
    must be a valid A-label. ValueError when the name is not valid IDNA."""
    try:
        if host.isascii():
            for label in host.split("."):
                if label[:4].lower() == "xn--":
                    idna.ulabel(label)
            return host
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        labels = mapped.split(".")
        trailing_dot = len(labels) > 1 and labels[-1] == ""
        if trailing_dot:
            labels.pop()
        converted = [label if label.isascii() else idna.alabel(label).decode("ascii") for label in labels]
        if any(not label for label in converted):
            raise idna.IDNAError("empty label")
        name = ".".join(converted) + ("." if trailing_dot else "")
        if not idna.valid_string_length(name, trailing_dot):
            raise idna.IDNAError("the name is too long")
        return name
    except UnicodeError as exc:  # idna.IDNAError is one
        raise ValueError(f"the host {host!r} is not a valid internationalized (IDNA) name: {exc}") from None


def ascii_url(url: str) -> str:
    """The URL with its host name in ASCII form (`ascii_host`); the rest is left as typed."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # an IPv6 literal
        return url
    host, colon, port = hostport.partition(":")
    converted = ascii_host(host)
    if converted == host:
        return url
    start = url.index("//") + 2  # the netloc follows the scheme's "//" (urlsplit found it there)
    assert url[start : start + len(parts.netloc)] == parts.netloc
    return url[:start] + f"{userinfo}{at}{converted}{colon}{port}" + url[start + len(parts.netloc) :]


def url_refusal(url: str, *, allow_private: bool = False) -> str | None:
    """Why a webhook URL is refused before any lookup (scheme, literal address), or None. The host is
    judged in its ASCII form, the one that is resolved: 127.0.0.1 typed in full-width digits is 127.0.0.1."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return "the URL has no host"
    try:
        host = ascii_host(host)
    except ValueError as exc:
        return str(exc)
    if parts.scheme == "http":
        if not (allow_private and is_loopback_host(host)):
            return "the URL must be https (plain http is allowed only to a loopback host in local development)"
    elif parts.scheme != "https":
        return "the URL must be https"
    if host.lower().rstrip(".") == "localhost" or host.lower().rstrip(".").endswith(".localhost"):
        return None if allow_private else "the host is a loopback name"
    ip = literal_address(host)
    if ip is not None:
        reason = address_refusal(ip, allow_private=allow_private)
        if reason is not None:
            return f"the host {host} is {reason}"
    return None


def customer_of(event: Mapping[str, Any]) -> str | None:
    """The customer an event is about (`data.customerId`; a payment failure names the payer), or None."""
    data = event.get("data")
    ref = data.get("customerId") if isinstance(data, Mapping) else None
    return ref[:255] if isinstance(ref, str) and ref else None
