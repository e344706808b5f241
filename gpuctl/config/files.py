"""TOML files: the one reader every part of gpuctl uses, and the atomic writer.

`read_toml` turns every failure (missing, unreadable, not UTF-8, a syntax error with its line
and column) into one ConfigError line naming the file; `parse_float=Decimal` keeps prices out of
binary floating point. `write_toml_atomic` leaves either the old file or the new one, created
0600 because profiles hold keys. `toml_value` spells one value as TOML would (`true`,
`["modal", "anthropic"]`), for every place a setting is shown to people. Must not: validate what is inside (resolve.py, costs and
vastai check their own tables) or cache anything: files are read when a command runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gpuctl.errors import ConfigError


def read_toml(path: Path, *, parse_float: Callable[[str], Any] = float, missing_hint: str | None = None,
              hint: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; a syntax error names the file, line and column.

    `missing_hint` goes with "file not found" (e.g. "reinstall gpuctl"), `hint` with every
    other failure."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", hint=missing_hint) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})", hint=hint) from None
    try:
        return tomllib.loads(raw.decode("utf-8"), parse_float=parse_float)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", hint=hint) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint=hint) from None


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


def toml_value(value: Any) -> str:
    """One value as TOML spells it: `true`, `5.0`, `"L4"`, `["modal", "anthropic"]`,
    `{ gpu = "L4" }`; never a Python repr (`True`, `['modal']`). None (unset) is ``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf") if not math.isfinite(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string escapes as JSON does
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)  # Decimal, Path: their own text
