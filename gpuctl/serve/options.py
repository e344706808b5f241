"""What `gpuctl serve` runs with, read and checked from the settings before anything listens:
`ServeOptions`, the client keys (`ClientKeys`) and the admin token.

Owns the safety rules a bad setting must not slip past: a non-loopback address without client
keys is refused unless `insecure`; keys and the admin token are at least 16 characters; a key
is compared in constant time against every key (no early exit), and never shown: errors name
a key by its name or position.

Must not: listen, print, or read settings other than through `Settings`.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpuctl.config import Settings
from gpuctl.errors import ConfigError, UsageError

MIN_SECRET = 16
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
NEW_SECRET = "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


@dataclass(frozen=True)
class ClientKey:
    name: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class ClientKeys:
    """The bearer keys /v1/* accepts, each with the name the ledger records."""

    keys: tuple[ClientKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def match(self, token: str | None) -> str | None:
        """The name of the key `token` is, or None. Every key is compared (constant time each)."""
        if token is None:
            return None
        given = token.encode()
        found = None
        for candidate in self.keys:
            if hmac.compare_digest(given, candidate.key.encode()) and found is None:
                found = candidate.name
        return found


def parse_keys(raw: str | None, source: str = "serve.api_keys") -> ClientKeys:
    """`name:key,name:key` → ClientKeys; a ConfigError names the entry, never the key."""
    if not raw:
        return ClientKeys()
    keys: list[ClientKey] = []
    for number, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        name, sep, key = entry.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not NAME_RE.match(name):
            raise ConfigError(f"{source}: entry {number} is not 'name:key'",
                              hint="e.g. GPUCTL_SERVE_API_KEYS='alice:KEY1,ci:KEY2'; names use letters, digits, "
                                   "'.', '_', '-', '@'")
        if len(key) < MIN_SECRET:
            raise ConfigError(f"{source}: the key named {name!r} is shorter than {MIN_SECRET} characters",
                              hint=NEW_SECRET)
        if name in (k.name for k in keys):
            raise ConfigError(f"{source}: the name {name!r} is used twice", hint="each key needs its own name")
        if any(hmac.compare_digest(key.encode(), k.key.encode()) for k in keys):
            raise ConfigError(f"{source}: the key named {name!r} is the same as another one",
                              hint="give each client its own key")
        keys.append(ClientKey(name, key))
    return ClientKeys(tuple(keys))


def check_token(raw: str | None) -> str | None:
    if raw and len(raw) < MIN_SECRET:
        raise ConfigError(f"the admin token (ADMIN_TOKEN or serve.admin_token) is shorter than {MIN_SECRET} "
                          "characters", hint=NEW_SECRET)
    return raw or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


@dataclass(frozen=True)
class ServeOptions:
    """Everything the gateway needs from the settings, checked. `profile` is the --profile
    given (a reload reads it again)."""

    host: str
    port: int
    workers: int
    insecure: bool
    models: tuple[str, ...]
    keys: ClientKeys
    admin_token: str | None = field(repr=False)
    max_inflight: int
    max_body_bytes: int
    request_timeout_s: float
    drain_s: float
    retry_after_s: int
    access_log: str
    health_interval_s: float
    max_tokens: int
    profile: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def flags(self) -> dict[str, Any]:
        """What a worker process needs besides the settings (which it reads itself)."""
        return {"host": self.host, "port": self.port, "workers": self.workers, "insecure": self.insecure,
                "profile": self.profile}


def serve_options(settings: Settings, *, host: str | None = None, port: int | None = None,
                  workers: int | None = None, insecure: bool = False, profile: str | None = None) -> ServeOptions:
    """The checked options: flags win over the settings (`serve.*`)."""
    host = host or settings["serve.host"]
    port = settings["serve.port"] if port is None else port
    workers = settings["serve.workers"] if workers is None else workers
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, got {port}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    keys = parse_keys(settings.get("serve.api_keys"))
    if not keys and not insecure and not is_loopback(host):
        raise UsageError(
            f"refusing to listen on {host} without client keys: anyone who reaches it spends your GPUs and tokens",
            hint="set serve.api_keys (GPUCTL_SERVE_API_KEYS='name:key,...'), or pass --insecure behind a proxy "
                 "that checks keys itself")
    model = settings.get("serve.model") or settings["modal.model"]
    return ServeOptions(
        host=host, port=int(port), workers=int(workers), insecure=insecure, models=(model,), keys=keys,
        admin_token=check_token(settings.get("serve.admin_token")),
        max_inflight=settings["serve.max_inflight"], max_body_bytes=settings["serve.max_body_bytes"],
        request_timeout_s=settings["serve.request_timeout_s"], drain_s=settings["serve.drain_s"],
        retry_after_s=settings["serve.retry_after_s"], access_log=settings["serve.access_log"],
        health_interval_s=settings["routing.health_interval_s"], max_tokens=settings["chat.max_tokens"],
        profile=profile,
    )


def options_from_flags(settings: Settings, flags: Mapping[str, Any]) -> ServeOptions:
    return serve_options(settings, host=flags.get("host"), port=flags.get("port"), workers=flags.get("workers"),
                         insecure=bool(flags.get("insecure")), profile=flags.get("profile"))
