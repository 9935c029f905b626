"""The SSRF guard of webhook deliveries: where a webhook may be POSTed, decided after DNS, at
delivery time, and enforced on the connection itself.

A receiver's URL is the client's to choose, so by default chatq refuses to reach anything
that is not a public address: loopback, private, link-local, shared, multicast, reserved and
unspecified addresses (the hosts and services beside chatq). The operator may allow those
with [webhooks] allow_private_networks; the cloud metadata addresses stay refused even then.
The check is made on the addresses the connection will use: GuardedResolver answers the
connector with the checked addresses only, so a name cannot resolve to a public address for
the check and to a private one for the connection (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba): they hand
# out credentials to whoever asks from inside the instance.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class RefusedAddress(OSError):
    """Every address of a webhook's host is one chatq may not deliver to; says which and why."""


def refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why a delivery to this address is refused, or None if it is allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address in METADATA:
        return "a cloud metadata address"
    if allow_private:
        return None
    for kind, found in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a reserved", address.is_reserved),
        ("a private", address.is_private),
        ("a non-public", not address.is_global),
    ):
        if found:
            return f"{kind} address"
    return None


def check_literal(host: str, allow_private: bool) -> None:
    """Raise RefusedAddress if host is an IP address that may not be reached. (The connector
    does not resolve an IP address, so GuardedResolver never sees one.)"""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return  # a name: GuardedResolver checks what it resolves to
    why = refusal(address, allow_private)
    if why is not None:
        raise RefusedAddress(
            f"refused by the SSRF guard: {host} is {why}{_hint(why, allow_private)}"
        )


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then keeps only the addresses that may be reached;
    if none may, raises RefusedAddress naming them."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refused: list[tuple[str, str]] = []
        for entry in found:
            why = refusal(ipaddress.ip_address(entry["host"]), self._allow_private)
            if why is None:
                allowed.append(entry)
            else:
                refused.append((entry["host"], why))
        if not allowed:
            raise RefusedAddress(_refused_message(host, refused, self._allow_private))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _refused_message(host: str, refused: list[tuple[str, str]], allow_private: bool) -> str:
    reasons = ", ".join(f"{address} ({why})" for address, why in refused)
    hint = _hint(" ".join(why for _, why in refused), allow_private)
    return f"refused by the SSRF guard: {host} resolves to {reasons}{hint}"


def _hint(whys: str, allow_private: bool) -> str:
    """How the operator could allow it, unless nothing can (metadata addresses)."""
    if allow_private or whys.replace("a cloud metadata address", "").strip() == "":
        return ""
    return "; an operator can allow such addresses with [webhooks] allow_private_networks"


def first_refusal(error: BaseException) -> RefusedAddress | None:
    """The RefusedAddress behind an aiohttp connection error, if that is what it was."""
    seen: Any = error
    while seen is not None:
        if isinstance(seen, RefusedAddress):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
