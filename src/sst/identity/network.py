"""The key that per-client limits count under."""

from __future__ import annotations

import ipaddress


def client_key(address: str | None) -> str:
    """The IPv4 address, or the IPv6 /64 (M6: one subscriber gets a whole /64, so keying the
    exact address gave an attacker 2^64 fresh limits). IPv4-mapped IPv6 is the IPv4."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
