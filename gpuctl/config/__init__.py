"""Configuration: the settings and provider names (keys), where files are and what every
setting resolves to with its source (resolve), profile files (profiles), TOML I/O (files).

This package's names are re-exported here so callers write `from gpuctl.config import
Settings, load_settings`. Nothing is read at import time; files that can hold keys are written
atomically with mode 0600.
"""

from __future__ import annotations

from gpuctl.config.files import read_toml, toml_value, write_toml_atomic
from gpuctl.config.keys import (
    FREE_SECTIONS,
    GPU_PROVIDERS,
    KEYS,
    KEYS_BY_NAME,
    PRICED_PROVIDERS,
    PROVIDERS,
    SECTIONS,
    Key,
    close_matches,
    did_you_mean,
    lookup_key,
)
from gpuctl.config.profiles import (
    create_profile,
    delete_profile,
    editing_profile,
    list_profiles,
    new_api_key,
    parse_cli_value,
    read_profile_masked,
    set_active_profile,
    set_profile_value,
    target_profile,
    unset_profile_value,
    writable_profile,
)
from gpuctl.config.resolve import (
    PROFILE_NAME_RE,
    Resolved,
    Settings,
    active_profile_name,
    check_profile_name,
    coerce,
    config_path,
    ensure_home,
    gpuctl_home,
    load_profile_file,
    load_settings,
    profile_path,
    profiles_dir,
    read_config_file,
    validate_profile_data,
)

__all__ = [
    "FREE_SECTIONS",
    "GPU_PROVIDERS",
    "KEYS",
    "KEYS_BY_NAME",
    "PRICED_PROVIDERS",
    "PROFILE_NAME_RE",
    "PROVIDERS",
    "SECTIONS",
    "Key",
    "Resolved",
    "Settings",
    "active_profile_name",
    "check_profile_name",
    "close_matches",
    "coerce",
    "config_path",
    "create_profile",
    "delete_profile",
    "did_you_mean",
    "editing_profile",
    "ensure_home",
    "gpuctl_home",
    "list_profiles",
    "load_profile_file",
    "load_settings",
    "lookup_key",
    "new_api_key",
    "parse_cli_value",
    "profile_path",
    "profiles_dir",
    "read_config_file",
    "read_profile_masked",
    "read_toml",
    "set_active_profile",
    "set_profile_value",
    "target_profile",
    "toml_value",
    "unset_profile_value",
    "validate_profile_data",
    "writable_profile",
    "write_toml_atomic",
]
