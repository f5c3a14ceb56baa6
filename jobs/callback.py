"""Callback URLs: checked against SSRF when a job is submitted and again when the POST is sent.

A callback must be http(s) with a host; every address the host resolves to must be public unless
``jobs.allow_private_callbacks``: loopback, link-local (cloud metadata at 169.254.169.254), private,
multicast, reserved and unspecified addresses are refused. The POST goes to the address that was
checked (no second DNS lookup in between), with no redirects followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from wattgate.errors import BadRequest

log = logging.getLogger("wattgate.jobs")

__all__ = ["check_callback_url", "post_callback"]


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


def check_callback_url(url: Any, allow_private: bool = False) -> tuple[str, str]:
    """(url, the address to connect to); BadRequest with the reason otherwise."""
    if not isinstance(url, str) or len(url) > 2048:
        raise BadRequest("parameters.callback_url must be a URL string of at most 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"callback_url must be http or https, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host or parts.username or parts.password:
        raise BadRequest("callback_url needs a host and no credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"callback_url host {host[:64]!r} does not resolve: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not allow_private:
        for a in addresses:
            why = _blocked(ipaddress.ip_address(a.split("%")[0]))
            if why:
                raise BadRequest(f"callback_url resolves to a {why} address ({a}); refused (SSRF). "
                                 "Set jobs.allow_private_callbacks to allow it")
    return url, addresses[0]


async def post_callback(url: str, payload: dict[str, Any], allow_private: bool, timeout_s: float) -> bool:
    """POST the job's summary; False (logged) on any failure. Never raises."""
    try:
        _, address = await asyncio.get_running_loop().run_in_executor(None, check_callback_url, url, allow_private)
        parts = urlsplit(url)
        host = f"[{address}]" if ":" in address else address
        netloc = f"{host}:{parts.port}" if parts.port else host
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            # https to an address: the certificate must still match the name (sni_hostname).
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            response = await client.post(target, content=json.dumps(payload).encode(), extensions=extensions,
                                         headers={"host": parts.netloc, "content-type": "application/json"})
        if response.status_code >= 300:
            log.warning("job callback to %s answered %s", parts.hostname, response.status_code)
            return False
        return True
    except Exception as exc:  # a callback must never hurt the runner
        log.warning("job callback to %s failed: %s", url[:200], exc)
        return False
