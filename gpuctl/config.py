"""Configuration: paths, TOML profiles, the seed's environment variables, precedence, validation.

Precedence is decided here and only here: flag > environment > profile > config.toml defaults >
built-in default, and every resolved value remembers its source so `gpuctl profile show
--resolved` can say `modal.gpu = H100 (from env MODAL_GPU_TYPE)`. Nothing is read at import
time; files that can hold keys are written atomically with mode 0600.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuctl.errors import ConfigError, UsageError
from gpuctl.redact import mask_secret

PROVIDERS = ("modal", "vastai", "anthropic", "endpoint")
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Key:
    """One setting: where it lives, its type, default, seed environment names, and checks."""

    section: str
    name: str
    type: type
    default: Any
    env: tuple[str, ...] = ()
    secret: bool = False
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


def _k(section: str, name: str, typ: type, default: Any, *env: str, secret: bool = False,
       doc: str = "", minimum: float | None = None, maximum: float | None = None) -> Key:
    return Key(section, name, typ, default, tuple(env), secret, doc, minimum, maximum)


# Defaults follow the seed README (model, GPU, windows, budgets, keep-alive, priority).
KEYS: tuple[Key, ...] = (
    _k("modal", "web_url", str, None, "MODAL_WEB_URL", doc="the deployed endpoint (set by `gpuctl deploy modal`)"),
    _k("modal", "app_name", str, "multi-agent-vllm-inference", "GPUCTL_MODAL_APP_NAME"),
    _k("modal", "model", str, "Qwen/Qwen2.5-7B-Instruct", "MODAL_MODEL"),
    _k("modal", "gpu", str, "L4", "MODAL_GPU_TYPE"),
    _k("modal", "scaledown_window_minutes", float, 5.0, "MODAL_SCALEDOWN_WINDOW_MINUTES",
       minimum=2 / 60, maximum=60),
    _k("modal", "max_model_len", int, 4096, minimum=256),
    _k("modal", "max_concurrent_inputs", int, 32, minimum=1),
    _k("modal", "min_containers", int, 0, minimum=0, doc="0 scales to zero; 1 keeps one GPU warm (billed)"),
    _k("modal", "max_containers", int, 1, minimum=1),
    _k("modal", "api_key", str, None, "GPUCTL_MODAL_API_KEY", secret=True,
       doc="vLLM --api-key of the Modal endpoint, sent as a Bearer token"),
    _k("vastai", "api_key", str, None, "VASTAI_API_KEY", secret=True),
    _k("vastai", "api_url", str, "https://console.vast.ai", "VAST_URL"),
    _k("vastai", "budget_limit", float, 15.0, "VASTAI_BUDGET_LIMIT", minimum=0),
    _k("vastai", "session_budget_limit", float, 2.0, "VASTAI_SESSION_BUDGET_LIMIT", minimum=0),
    _k("vastai", "keep_alive_minutes", float, 45.0, "VASTAI_KEEP_ALIVE_MINUTES", minimum=0),
    _k("vastai", "image", str, None, doc="vLLM image; default: the pin in deploy/versions.toml"),
    _k("vastai", "disk_gb", float, 40.0, minimum=10),
    _k("vastai", "gpu_tiers", str, "default", doc="'default' (configs/gpu_tiers.toml) or a TOML file path"),
    _k("vastai", "model", str, "Qwen/Qwen2.5-7B-Instruct", "VASTAI_MODEL"),
    _k("vastai", "hf_token", str, None, "HF_TOKEN", secret=True, doc="for gated models"),
    _k("anthropic", "api_key", str, None, "ANTHROPIC_API_KEY", secret=True),
    _k("anthropic", "model", str, "claude-haiku-4-5", "ANTHROPIC_MODEL"),
    _k("anthropic", "max_tokens", int, 2048, minimum=1),
    _k("anthropic", "base_url", str, None, "ANTHROPIC_BASE_URL"),
    _k("endpoint", "url", str, None, "GPUCTL_ENDPOINT_URL", doc="any OpenAI-compatible server you run"),
    _k("endpoint", "api_key", str, None, "GPUCTL_ENDPOINT_API_KEY", secret=True),
    _k("endpoint", "model", str, None, "GPUCTL_ENDPOINT_MODEL"),
    _k("routing", "priority", list, ["modal", "vastai", "anthropic"], "GPUCTL_PRIORITY"),
    _k("routing", "health_interval_s", float, 60.0, minimum=1),
    _k("routing", "failure_threshold", int, 3, minimum=1),
    _k("routing", "cooldown_s", float, 60.0, minimum=0),
    _k("routing", "connect_timeout_s", float, 5.0, minimum=0.1),
    _k("routing", "first_byte_timeout_s", float, 120.0, minimum=0.1,
       doc="how long to wait for a cold GPU's first byte"),
    _k("routing", "read_timeout_s", float, 30.0, minimum=0.1, doc="max gap between streamed chunks"),
    _k("routing", "health_timeout_s", float, 5.0, minimum=0.1),
    _k("routing", "fallback_on_cold", bool, True,
       doc="answer from the next provider instead of waiting for a cold GPU"),
    _k("chat", "system_prompt", str, "You are a helpful assistant."),
    _k("chat", "temperature", float, 0.7, minimum=0, maximum=2),
    _k("chat", "max_tokens", int, 2048, minimum=1),
)
KEYS_BY_NAME: dict[str, Key] = {k.dotted: k for k in KEYS}
SECTIONS = tuple(dict.fromkeys(k.section for k in KEYS))
# Free-form tables that a profile may carry: price overrides (checked by costs.py).
FREE_SECTIONS = ("prices",)


# ---------------------------------------------------------------- paths


def gpuctl_home(env: Mapping[str, str] | None = None) -> Path:
    """GPUCTL_HOME, else the platform config dir (XDG_CONFIG_HOME or ~/.config) / gpuctl."""
    env = os.environ if env is None else env
    if env.get("GPUCTL_HOME"):
        return Path(env["GPUCTL_HOME"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "gpuctl"


def ensure_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
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


# ---------------------------------------------------------------- atomic TOML I/O


def write_toml_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write TOML so that a crash leaves either the old file or the new one, never a torn one.

    The temp file is created 0600 in the same directory (so `os.replace` is atomic) and fsynced.
    """
    import tomli_w  # only commands that write pay for it

    text = tomli_w.dumps(_drop_none(data))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out[key] = _drop_none(value)
        elif value is not None:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error names the file, line and column."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"{path}: TOML syntax error: {exc}", hint="fix the file by hand; gpuctl never overwrites it") from None


# ---------------------------------------------------------------- validation


def did_you_mean(word: str, choices: list[str]) -> str:
    """` (did you mean 'gpu'?)` for a near miss, else ''. Prefixes count: gpu_typo → gpu."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if word.startswith(c) or c.startswith(word)][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(key: Key, value: Any, origin: str) -> Any:
    """Check and convert one value for `key`; `origin` names where it came from for the error."""
    if value is None:
        return None
    typ = key.type
    try:
        if typ is bool:
            if isinstance(value, bool):
                result: Any = value
            elif isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
                result = True
            elif isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
                result = False
            else:
                raise TypeError
        elif typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            result = int(value)
        elif typ is float:
            if isinstance(value, bool):
                raise TypeError
            result = float(value)
        elif typ is list:
            if isinstance(value, str):
                result = [part.strip() for part in value.split(",") if part.strip()]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                result = list(value)
            else:
                raise TypeError
        else:
            if not isinstance(value, str):
                raise TypeError
            result = value
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: {key.dotted} must be {_type_word(typ)}, got {_show(key, value)}"
        ) from None
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        if key.minimum is not None and result < key.minimum:
            if key.minimum == 0:
                raise ConfigError(f"{origin}: {key.dotted} must not be negative, got {result}")
            raise ConfigError(f"{origin}: {key.dotted} must be at least {key.minimum:g}, got {result}")
        if key.maximum is not None and result > key.maximum:
            raise ConfigError(f"{origin}: {key.dotted} must be at most {key.maximum:g}, got {result}")
    if key.dotted == "routing.priority":
        for name in result:
            if name not in PROVIDERS:
                raise ConfigError(
                    f"{origin}: routing.priority names unknown provider {name!r}"
                    f"{did_you_mean(name, list(PROVIDERS))}",
                    hint="known providers: " + ", ".join(PROVIDERS),
                )
        if not result:
            raise ConfigError(f"{origin}: routing.priority is empty", hint="e.g. [\"modal\", \"anthropic\"]")
    if typ is str and key.name.endswith("url") and result and not re.match(r"^https?://", result):
        raise ConfigError(f"{origin}: {key.dotted} must be an http(s) URL, got {_show(key, value)}")
    return result


def _type_word(typ: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", list: "a list of names", str: "text"}[typ]


def _show(key: Key, value: Any) -> str:
    if key.secret and isinstance(value, str):
        return repr(mask_secret(value))
    return repr(value)


def validate_profile_data(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Check a parsed profile: known sections and keys (with did-you-mean), types, ranges."""
    clean: dict[str, Any] = {}
    for section, table in data.items():
        if section in FREE_SECTIONS:
            if not isinstance(table, Mapping):
                raise ConfigError(f"{origin}: [{section}] must be a table")
            clean[section] = dict(table)
            continue
        if section == "active_profile":  # config.toml only; the caller decides if it is allowed
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
    return validate_profile_data(read_toml(path), str(path))


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
        data = read_toml(cfg)
        name = data.get("active_profile")
        if isinstance(name, str) and name:
            return name, "config.toml"
    return None, "none"


def load_settings(
    *,
    profile: str | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Settings:
    """Resolve every setting: flag > environment > profile > config.toml defaults > default.

    `flags` maps dotted keys to values given on the command line (None means not given).
    With no profile at all gpuctl works from the environment alone, as the seed did.
    """
    env = os.environ if env is None else env
    home = gpuctl_home(env) if home is None else home
    name, why = active_profile_name(home, flag=profile, env=env)
    defaults_data: dict[str, Any] = {}
    cfg = config_path(home)
    if cfg.exists():
        defaults_data = validate_profile_data(read_toml(cfg), str(cfg))
    profile_data: dict[str, Any] = {}
    pfile: Path | None = None
    if name is not None:
        pfile = profile_path(home, name)
        if not pfile.exists():
            raise ConfigError(
                f"profile {name!r} (from {why}) does not exist",
                hint=f"create it with `gpuctl profile create {name}`, or list them with `gpuctl profile list`",
            )
        profile_data = load_profile_file(pfile)
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
            resolved = Resolved(coerce(key, flag_value, "command line"), "flag")
        values[key.dotted] = resolved
    extra = {s: {**defaults_data.get(s, {}), **profile_data.get(s, {})} for s in FREE_SECTIONS}
    return Settings(home=home, profile=name, profile_file=pfile, values=values, extra=extra)


# ---------------------------------------------------------------- profile management


def list_profiles(home: Path) -> list[str]:
    folder = profiles_dir(home)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if not p.name.startswith("."))


def _update_config(home: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = config_path(home)
    data = read_toml(cfg) if cfg.exists() else {}
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


def lookup_key(dotted: str) -> Key:
    key = KEYS_BY_NAME.get(dotted)
    if key is None:
        raise UsageError(
            f"unknown setting {dotted!r}{did_you_mean(dotted, list(KEYS_BY_NAME))}",
            hint="see `gpuctl profile show --resolved` for every key",
        )
    return key


@contextlib.contextmanager
def editing_profile(home: Path, name: str) -> Iterator[dict[str, Any]]:
    """Read a profile, let the caller change the dict, validate, write atomically.

    A broken profile is reported, never overwritten; an exception inside leaves the file as it was.
    """
    path = profile_path(home, name)
    if not path.exists():
        raise ConfigError(f"profile {name!r} does not exist", hint=f"create it with `gpuctl profile create {name}`")
    data = load_profile_file(path)
    yield data
    validate_profile_data(data, str(path))
    write_toml_atomic(path, data)


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
