"""Profile files: create, delete, use, set and unset values, show one masked, and the key
generator whose keys land in them.

Every write is validated first and written atomically (files.write_toml_atomic): a broken
profile is reported, never overwritten. Must not: decide precedence (resolve.py does) or print.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpuctl.config.files import write_toml_atomic
from gpuctl.config.keys import KEYS_BY_NAME, Key, lookup_key
from gpuctl.config.resolve import (
    Settings,
    active_profile_name,
    coerce,
    config_path,
    ensure_home,
    load_profile_file,
    profile_path,
    profiles_dir,
    read_config_file,
    validate_profile_data,
)
from gpuctl.errors import ConfigError, UsageError
from gpuctl.redact import mask_secret


def new_api_key() -> str:
    """The one key generator: a URL-safe random key for a vLLM server gpuctl starts (Modal
    deploy, Vast.ai launch) and for gateway keys; 32 bytes of `secrets`."""
    import secrets

    return secrets.token_urlsafe(32)


def list_profiles(home: Path) -> list[str]:
    folder = profiles_dir(home)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if not p.name.startswith("."))


def _update_config(home: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = config_path(home)
    data = read_config_file(cfg) if cfg.exists() else {}
    change(data)
    write_toml_atomic(cfg, data)


def set_active_profile(home: Path, name: str | None) -> None:
    if name is not None and not profile_path(home, name).exists():
        raise ConfigError(f"profile {name!r} does not exist", hint="see `gpuctl profile list`")

    def change(data: dict[str, Any]) -> None:
        if name is None:
            data.pop("active_profile", None)
        else:
            data["active_profile"] = name

    _update_config(home, change)


def create_profile(home: Path, name: str, *, from_file: Path | None = None) -> Path:
    """Create profiles/NAME.toml (validated copy of `from_file`, or empty). Never overwrites."""
    path = profile_path(home, name)
    if path.exists():
        raise UsageError(f"profile {name!r} already exists at {path}", hint=f"edit it with `gpuctl profile set`, or `gpuctl profile delete {name}` first")
    data = load_profile_file(from_file) if from_file is not None else {}
    data.pop("active_profile", None)
    ensure_home(home)
    write_toml_atomic(path, data)
    return path


def delete_profile(home: Path, name: str) -> None:
    path = profile_path(home, name)
    if not path.exists():
        raise ConfigError(f"profile {name!r} does not exist", hint="see `gpuctl profile list`")
    path.unlink()
    current, why = active_profile_name(home, env={})
    if current == name and why == "config.toml":
        set_active_profile(home, None)


def parse_cli_value(key: Key, text: str) -> Any:
    """Turn `gpuctl profile set KEY VALUE` text into a typed value (lists: a,b or TOML array)."""
    if key.type is list and text.strip().startswith("["):
        try:
            parsed = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise UsageError(f"{key.dotted}: cannot read {text!r} as a list", hint='e.g. modal,anthropic or ["modal", "anthropic"]') from None
        return coerce(key, parsed, "command line")
    return coerce(key, text, "command line")


@contextlib.contextmanager
def editing_profile(home: Path, name: str) -> Iterator[dict[str, Any]]:
    """Read a profile, let the caller change the dict, validate, write atomically.

    The check is of the profile as changed, so `set`/`unset` can repair the one bad value that
    breaks it (a GPU the catalog no longer lists, a hand edit); a profile still broken after the
    change is reported, never written; an exception inside leaves the file as it was.
    """
    path = profile_path(home, name)
    if not path.exists():
        raise ConfigError(f"profile {name!r} does not exist", hint=f"create it with `gpuctl profile create {name}`")
    data = read_config_file(path)
    if any(not isinstance(table, dict) for table in data.values()):
        validate_profile_data(data, str(path))  # a section that is not a table: say so, change nothing
    yield data
    clean = validate_profile_data(data, str(path))
    write_toml_atomic(path, clean)


def set_profile_value(home: Path, name: str, dotted: str, value: Any) -> Any:
    key = lookup_key(dotted)
    typed = parse_cli_value(key, value) if isinstance(value, str) else coerce(key, value, "command line")
    with editing_profile(home, name) as data:
        data.setdefault(key.section, {})[key.name] = typed
    return typed


def unset_profile_value(home: Path, name: str, dotted: str) -> bool:
    key = lookup_key(dotted)
    with editing_profile(home, name) as data:
        table = data.get(key.section, {})
        removed = table.pop(key.name, None) is not None
        if not table:
            data.pop(key.section, None)
    return removed


def target_profile(home: Path, name: str | None) -> str:
    """The profile a `gpuctl profile` write applies to: NAME, else GPUCTL_PROFILE / the active one."""
    if name:
        return name
    current, _ = active_profile_name(home)
    if current is None:
        raise ConfigError("no active profile", hint="create one with `gpuctl profile create NAME` or pass --profile NAME")
    return current


def read_profile_masked(home: Path, name: str) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A profile's own values (not resolved), secrets masked, for `gpuctl profile show`."""
    path = profile_path(home, name)
    if not path.exists():
        raise ConfigError(f"profile {name!r} does not exist", hint="see `gpuctl profile list`")
    masked: dict[str, dict[str, Any]] = {}
    for section, table in load_profile_file(path).items():
        masked[section] = {}
        for key, value in table.items():
            spec = KEYS_BY_NAME.get(f"{section}.{key}")
            secret = spec is not None and spec.secret and isinstance(value, str)
            masked[section][key] = mask_secret(value) if secret else value
    return path, masked


def writable_profile(settings: Settings) -> str:
    """The profile that commands like `deploy` write into; create 'default' if none is active."""
    if settings.profile is not None:
        return settings.profile
    home = settings.home
    if "default" not in list_profiles(home):
        create_profile(home, "default")
    if active_profile_name(home, env={})[0] is None:
        set_active_profile(home, "default")
    return "default"
