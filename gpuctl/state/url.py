"""Where the state lives: `state.url` (`GPUCTL_STATE_URL`) parsed into a `Location`.

Unset (or `sqlite:///PATH`): the embedded SQLite file, `GPUCTL_HOME/state.db` by default.
`postgresql://user:pass@host:5432/db?sslmode=require` (or `postgres://`): a shared
PostgreSQL, through psycopg 3; libpq's own environment variables (PGHOST, PGPASSWORD,
PGSSLMODE, ...) fill in whatever the URL leaves out. `Location.shown` is the URL with its
password masked: the only form that is ever printed, logged or put in --json.

Must not: import a database driver or open anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gpuctl.errors import ConfigError
from gpuctl.redact import mask_url

POSTGRES_SCHEMES = ("postgresql", "postgres")
SCHEMES = (*POSTGRES_SCHEMES, "sqlite")
URL_HINT = "state.url is postgresql://user:password@host:5432/db, or unset for GPUCTL_HOME/state.db"


@dataclass(frozen=True)
class Location:
    kind: str  # "sqlite" | "postgresql"
    url: str  # as given (may hold a password: never show it); for SQLite, the file path
    path: Path | None = None  # the SQLite file

    @property
    def shown(self) -> str:
        return str(self.path) if self.path is not None else mask_url(self.url)

    @property
    def tag(self) -> str:
        """A short stable name for this database (the local spool's file name), no secret in it:
        the same database however its password is given (in the URL, PGPASSWORD, ~/.pgpass)."""
        identity = self.url
        if self.kind == "postgresql":
            parts = urlsplit(self.url)
            query = "&".join(sorted(q for q in parts.query.split("&") if q and not q.startswith("password=")))
            where = parts.netloc.rpartition("@")[2]
            identity = f"{parts.scheme}://{parts.username or ''}@{where}{parts.path}?{query}"
        return hashlib.sha256(identity.encode()).hexdigest()[:12]

    @property
    def legacy_tag(self) -> str:
        """The spool's name in earlier versions (the whole URL's hash): taken over once, so no row is lost."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]


def parse_location(url: str | None, home: Path) -> Location:
    """The state for `url` (None or "" → GPUCTL_HOME/state.db); ConfigError for anything else."""
    if not url:
        return Location("sqlite", str(home / "state.db"), home / "state.db")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in POSTGRES_SCHEMES:
        parts = urlsplit(url)
        if parts.path not in ("", "/") and "/" in parts.path.strip("/"):
            raise ConfigError(f"state.url {mask_url(url)} names more than one database", hint=URL_HINT)
        return Location("postgresql", url)
    if scheme == "sqlite":
        path = Path(unquote(url.partition("://")[2])).expanduser()
        if not str(path) or str(path) == ".":
            raise ConfigError(f"state.url {url} names no file", hint=URL_HINT)
        return Location("sqlite", str(path), path)
    from gpuctl.config import did_you_mean

    raise ConfigError(f"state.url must start with postgresql:// or sqlite:// (got {mask_url(url)!r})"
                      f"{did_you_mean(scheme, SCHEMES) if scheme else ''}", hint=URL_HINT)
