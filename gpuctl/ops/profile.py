"""The `gpuctl profile` verbs: list, show, create, use, set, unset, delete TOML profiles.

Each takes the profile named on the command line (or `--profile`, or none) and returns the data
that `--json` prints; the reading, validating and atomic writing is `gpuctl.config`'s. These
work on the profile files themselves, so unlike other verbs they take no resolved `Settings`:
a broken profile must still be listed, shown with its error, or deleted. `home` defaults to
GPUCTL_HOME (tests pass their own).

Must not: print, prompt (the CLI confirms a delete before calling `delete`) or exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuctl import config


def _home(home: Path | None) -> Path:
    return config.gpuctl_home() if home is None else home


def list_all(*, flag: str | None = None, home: Path | None = None) -> dict[str, Any]:
    """The profiles, which one is active and why."""
    home = _home(home)
    names = config.list_profiles(home)
    active, source = config.active_profile_name(home, flag=flag)
    return {"profiles": [{"name": n, "active": n == active} for n in names], "active": active,
            "active_source": source, "home": str(home)}


def show_resolved(profile: str | None = None) -> dict[str, Any]:
    """Every setting in force for `profile` (default: the active one) and where it comes from."""
    settings = config.load_settings(profile=profile)
    return {"profile": settings.profile, "file": settings.profile_file,
            "settings": {r["key"]: {"value": r["value"], "source": r["source"]} for r in settings.rows()}}


def show(name: str | None = None, *, home: Path | None = None) -> dict[str, Any]:
    """One profile's own values, secrets masked (NAME, else GPUCTL_PROFILE / the active one)."""
    home = _home(home)
    target = config.target_profile(home, name)
    path, masked = config.read_profile_masked(home, target)
    return {"profile": target, "file": path, "values": masked}


def create(name: str, *, from_file: Path | None = None, home: Path | None = None) -> dict[str, Any]:
    """Create a profile (a validated copy of `from_file`, or empty); active if none is."""
    home = _home(home)
    none_active = config.active_profile_name(home, env={})[0] is None  # read config.toml before writing anything
    path = config.create_profile(home, name, from_file=from_file)
    if none_active:
        config.set_active_profile(home, name)
    return {"profile": name, "file": path, "active": none_active}


def use(name: str, *, home: Path | None = None) -> dict[str, Any]:
    """Make `name` the active profile (in config.toml)."""
    config.set_active_profile(_home(home), name)
    return {"active": name}


def set_value(key: str, value: str, *, profile: str | None = None, home: Path | None = None) -> dict[str, Any]:
    """Set one dotted key in `profile` (default: the active one); the value comes back masked."""
    from gpuctl.redact import mask_secret, redact

    home = _home(home)
    target = config.target_profile(home, profile)
    typed = config.set_profile_value(home, target, key, value)
    shown = mask_secret(typed) if config.KEYS_BY_NAME[key].secret and isinstance(typed, str) else typed
    if isinstance(shown, str):
        shown = redact(shown)  # a URL may carry user:password or ?api_key=
    return {"profile": target, "key": key, "value": shown}


def unset_value(key: str, *, profile: str | None = None, home: Path | None = None) -> dict[str, Any]:
    """Remove one dotted key from `profile` so the default (or the environment) applies."""
    home = _home(home)
    target = config.target_profile(home, profile)
    removed = config.unset_profile_value(home, target, key)
    return {"profile": target, "key": key, "removed": removed}


def plan_delete(name: str, *, home: Path | None = None) -> dict[str, Any]:
    """What `delete` would remove (the file must exist and be readable); removes nothing."""
    path, _ = config.read_profile_masked(_home(home), name)
    return {"dry_run": True, "would_delete": path}


def delete(name: str, *, home: Path | None = None) -> dict[str, Any]:
    """Delete a profile file (and make none active if it was the active one)."""
    config.delete_profile(_home(home), name)
    return {"deleted": name}
