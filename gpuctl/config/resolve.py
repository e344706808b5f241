"""Where gpuctl's files are, and what every setting resolves to, with its source.

Precedence is decided here and only here: flag > environment > profile > config.toml defaults >
built-in default, and every resolved value remembers its source so `gpuctl profile show
--resolved` can say `modal.gpu = H100 (from env MODAL_GPU_TYPE)`. Also owns checking values
against the Key table (`coerce`, `validate_profile_data`). Nothing is read at import time; this
module never writes a file (profiles.py does).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuctl.config.files import read_toml, toml_value
from gpuctl.config.gpus import check_gpu_setting
from gpuctl.config.keys import (
    FREE_SECTIONS,
    KEYS,
    KEYS_BY_NAME,
    PROVIDERS,
    SECTIONS,
    Key,
    did_you_mean,
)
from gpuctl.errors import ConfigError, UsageError
from gpuctl.redact import mask_secret, remember_secrets

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIX_BY_HAND = "fix the file by hand; gpuctl never overwrites it"

# ---------------------------------------------------------------- paths


def gpuctl_home(env: Mapping[str, str] | None = None) -> Path:
    """GPUCTL_HOME, else the platform config dir (XDG_CONFIG_HOME or ~/.config) / gpuctl."""
    env = os.environ if env is None else env
    if env.get("GPUCTL_HOME"):
        return Path(env["GPUCTL_HOME"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "gpuctl"


def ensure_home(home: Path) -> Path:
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise ConfigError(f"GPUCTL_HOME {home} exists but is not a directory",
                          hint="point GPUCTL_HOME at a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create GPUCTL_HOME {home}: {exc.strerror}",
                          hint="point GPUCTL_HOME at a writable directory") from None
    return home


def profiles_dir(home: Path) -> Path:
    return home / "profiles"


def profile_path(home: Path, name: str) -> Path:
    check_profile_name(name)
    return profiles_dir(home) / f"{name}.toml"


def config_path(home: Path) -> Path:
    return home / "config.toml"


def check_profile_name(name: str) -> None:
    if not PROFILE_NAME_RE.match(name):
        raise UsageError(
            f"invalid profile name {name!r}",
            hint="use letters, digits, '-', '_' or '.', starting with a letter or digit",
        )


def read_config_file(path: Path) -> dict[str, Any]:
    """A profile or config.toml, parsed but not yet checked."""
    return read_toml(path, hint=FIX_BY_HAND)


# ---------------------------------------------------------------- validation


def coerce(key: Key, value: Any, origin: str, *, name: str | None = None) -> Any:
    """Check and convert one value for `key`; `origin` names where it came from for the error,
    `name` what the user typed for it (a flag such as `--scaledown-window`; default the key)."""
    if value is None:
        return None
    try:
        return _coerce(key, value, origin, name or key.dotted)
    except ConfigError as exc:
        if origin == "command line":  # a bad flag is a usage error (exit 2), not a broken config
            hint = exc.hint or (f"{name} sets {key.dotted}" if name and name != key.dotted else None)
            raise UsageError(exc.message.removeprefix("command line: "), hint=hint) from None
        raise


def _convert(typ: type, value: Any) -> Any:
    """`value` as `typ`; TypeError or ValueError when it is not one."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
            return False
        raise TypeError
    if typ is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return int(value)
    if typ is float:
        if isinstance(value, bool):
            raise TypeError
        result = float(value)
        if not math.isfinite(result):  # "nan" parses as a float and slips past every bound
            raise ValueError
        return result
    if typ is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise TypeError
    if not isinstance(value, str):
        raise TypeError
    return value


def _coerce(key: Key, value: Any, origin: str, what: str) -> Any:
    try:
        result = _convert(key.type, value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: {what} must be {_type_word(key.type)}, got {_show(key, value)}"
        ) from None
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        if key.minimum is not None and result < key.minimum:
            if key.minimum == 0:
                raise ConfigError(f"{origin}: {what} must not be negative, got {result}")
            raise ConfigError(f"{origin}: {what} must be at least {key.minimum:g}, got {result}")
        if key.maximum is not None and result > key.maximum:
            raise ConfigError(f"{origin}: {what} must be at most {key.maximum:g}, got {result}")
    if key.dotted == "routing.priority":
        result = _priority(result, origin)
    if key.gpu_of is not None and result:
        try:
            result = check_gpu_setting(key.gpu_of, result)
        except UsageError as exc:
            raise ConfigError(f"{origin}: {what}: {exc.message}", hint=exc.hint) from None
    if key.dotted == "vastai.gpu_tiers":
        _gpu_tiers(result, origin)
    if key.dotted == "state.url":
        if result and not re.match(r"^(postgres(ql)?|sqlite)://", result, flags=re.I):
            raise ConfigError(f"{origin}: state.url must be a postgresql:// (or sqlite://) URL, got {_show(key, value)}")
    elif key.type is str and key.name.endswith("url") and result and not re.match(r"^https?://", result):
        raise ConfigError(f"{origin}: {what} must be an http(s) URL, got {_show(key, value)}")
    return result


def _priority(names: list[str], origin: str) -> list[str]:
    """Known provider names (any case), each once, at least one."""
    names = [name.strip().lower() for name in names]
    for name in names:
        if name not in PROVIDERS:
            raise ConfigError(
                f"{origin}: routing.priority names unknown provider {name!r}{did_you_mean(name, list(PROVIDERS))}",
                hint="known providers: " + ", ".join(PROVIDERS),
            )
    twice = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    if twice:
        raise ConfigError(
            f"{origin}: routing.priority names {', '.join(twice)} more than once",
            hint="list each provider once, in the order to try them, e.g. " + ",".join(dict.fromkeys(names)),
        )
    if not names:
        raise ConfigError(f"{origin}: routing.priority is empty", hint="e.g. [\"modal\", \"anthropic\"]")
    return names


def _gpu_tiers(value: str, origin: str) -> None:
    """'default', or something that reads as the path of a TOML file (the file itself is read,
    and checked, when a launch uses it)."""
    text = value.strip()
    if text == "default" or text.endswith(".toml") or "/" in text or "\\" in text:
        return
    raise ConfigError(
        f"{origin}: vastai.gpu_tiers must be 'default' or the path of a TOML file, got {text!r}"
        f"{did_you_mean(text, ['default'])}",
        hint="e.g. `gpuctl profile set vastai.gpu_tiers ~/my_tiers.toml` (shaped like configs/gpu_tiers.toml)",
    )


def _type_word(typ: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a finite number", list: "a list of names",
            str: "text"}[typ]


def _show(key: Key, value: Any) -> str:
    """A rejected value as TOML spells it (`"abc"`, `true`, `["x"]`), secrets masked."""
    if key.secret and isinstance(value, str):
        return toml_value(mask_secret(value))
    return toml_value(value)


def validate_profile_data(data: Mapping[str, Any], origin: str, *, is_config: bool = False) -> dict[str, Any]:
    """Check a parsed profile (or config.toml, which may also name the active profile): known
    sections and keys (with did-you-mean), types, ranges."""
    clean: dict[str, Any] = {}
    for section, table in data.items():
        if section in FREE_SECTIONS:
            if not isinstance(table, Mapping):
                raise ConfigError(f"{origin}: [{section}] must be a table")
            clean[section] = dict(table)
            continue
        if section == "active_profile":
            if not is_config:
                raise ConfigError(f"{origin}: active_profile belongs in config.toml, not in a profile",
                                  hint="use `gpuctl profile use NAME`")
            if not isinstance(table, str) or not PROFILE_NAME_RE.match(table):
                raise ConfigError(f"{origin}: active_profile must be a profile name, got {table!r}",
                                  hint="use `gpuctl profile use NAME`")
            clean[section] = table
            continue
        if section not in SECTIONS:
            raise ConfigError(
                f"{origin}: unknown section [{section}]{did_you_mean(section, [*SECTIONS, *FREE_SECTIONS])}",
                hint="sections: " + ", ".join((*SECTIONS, *FREE_SECTIONS)),
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: {section} must be a table ([{section}])")
        names = [k.name for k in KEYS if k.section == section]
        out: dict[str, Any] = {}
        for name, value in table.items():
            key = KEYS_BY_NAME.get(f"{section}.{name}")
            if key is None:
                raise ConfigError(
                    f"{origin}: unknown key {section}.{name}{did_you_mean(name, names)}",
                    hint=f"keys in [{section}]: " + ", ".join(names),
                )
            out[name] = coerce(key, value, origin)
        clean[section] = out
    return clean


def load_profile_file(path: Path) -> dict[str, Any]:
    return validate_profile_data(read_config_file(path), str(path))


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str  # "default", "config.toml", "profile dev", "env MODAL_GPU_TYPE", "flag --gpu"


@dataclass(frozen=True)
class Settings:
    """Every setting resolved, each with its source. Built by `load_settings` per command run."""

    home: Path
    profile: str | None
    profile_file: Path | None
    values: Mapping[str, Resolved]
    extra: Mapping[str, Any]  # free-form tables, e.g. [prices]

    def __getitem__(self, dotted: str) -> Any:
        return self.values[dotted].value

    def get(self, dotted: str, default: Any = None) -> Any:
        item = self.values.get(dotted)
        return default if item is None or item.value is None else item.value

    def source(self, dotted: str) -> str:
        return self.values[dotted].source

    def section(self, name: str) -> dict[str, Any]:
        return {k.name: self.values[k.dotted].value for k in KEYS if k.section == name}

    def secrets(self) -> list[str]:
        """The secret values in force, for redacting output that might echo them."""
        return [str(self.values[k.dotted].value) for k in KEYS if k.secret and self.values[k.dotted].value]

    def rows(self, *, show_secrets: bool = False) -> list[dict[str, Any]]:
        """One row per key for display: key, value (secrets masked), source."""
        out = []
        for key in KEYS:
            item = self.values[key.dotted]
            value = item.value
            if key.secret and not show_secrets and isinstance(value, str):
                value = mask_secret(value)
            out.append({"key": key.dotted, "value": value, "source": item.source, "secret": key.secret})
        return out


def active_profile_name(home: Path, *, flag: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """Which profile applies, and why: flag > GPUCTL_PROFILE > config.toml > none."""
    env = os.environ if env is None else env
    if flag:
        return flag, "flag --profile"
    if env.get("GPUCTL_PROFILE"):
        return env["GPUCTL_PROFILE"], "env GPUCTL_PROFILE"
    cfg = config_path(home)
    if cfg.exists():
        data = read_config_file(cfg)
        name = data.get("active_profile")
        if isinstance(name, str) and name:
            return name, "config.toml"
    return None, "none"


def _profile_data(home: Path, name: str | None, why: str) -> tuple[dict[str, Any], Path | None]:
    if name is None:
        return {}, None
    if not PROFILE_NAME_RE.match(name):
        raise ConfigError(f"profile name {name!r} (from {why}) is not valid",
                          hint="names use letters, digits, '-', '_' and '.'")
    pfile = profile_path(home, name)
    if not pfile.exists():
        raise ConfigError(
            f"profile {name!r} (from {why}) does not exist",
            hint=f"create it with `gpuctl profile create {name}`, or list them with `gpuctl profile list`",
        )
    return load_profile_file(pfile), pfile


def load_settings(
    *,
    profile: str | None = None,
    flags: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Settings:
    """Resolve every setting: flag > environment > profile > config.toml defaults > default.

    `flags` maps dotted keys to values given on the command line (None means not given);
    `flag_names` the flag each was given by (`--scaledown-window`), so an error names it.
    With no profile at all gpuctl works from the environment alone, as the original package did.
    """
    env = os.environ if env is None else env
    home = gpuctl_home(env) if home is None else home
    name, why = active_profile_name(home, flag=profile, env=env)
    defaults_data: dict[str, Any] = {}
    cfg = config_path(home)
    if cfg.exists():
        defaults_data = validate_profile_data(read_config_file(cfg), str(cfg), is_config=True)
    profile_data, pfile = _profile_data(home, name, why)
    values: dict[str, Resolved] = {}
    flags = flags or {}
    for key in KEYS:
        resolved = Resolved(key.default, "default")
        if key.name in defaults_data.get(key.section, {}):
            resolved = Resolved(defaults_data[key.section][key.name], "config.toml")
        if key.name in profile_data.get(key.section, {}):
            resolved = Resolved(profile_data[key.section][key.name], f"profile {name}")
        for var in key.env:
            raw = env.get(var)
            # An empty variable means unset (ANTHROPIC_BASE_URL="" would otherwise break the SDK).
            if raw is not None and raw.strip() != "":
                resolved = Resolved(coerce(key, raw.strip(), f"env {var}"), f"env {var}")
                break
        flag_value = flags.get(key.dotted)
        if flag_value is not None:
            flag = (flag_names or {}).get(key.dotted)
            resolved = Resolved(coerce(key, flag_value, "command line", name=flag), "flag")
        values[key.dotted] = resolved
    extra = {s: {**defaults_data.get(s, {}), **profile_data.get(s, {})} for s in FREE_SECTIONS}
    settings = Settings(home=home, profile=name, profile_file=pfile, values=values, extra=extra)
    # Masked wherever they show up, even quoted back by a server; the client keys by key alone.
    remember_secrets(settings.secrets(), named_keys=[settings.get("serve.api_keys") or ""])
    return settings
