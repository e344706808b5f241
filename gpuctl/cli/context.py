"""What every command receives through `ctx.obj`: the output settings and lazily loaded settings.

Settings are read when a command first asks for them, never at import, so `--help` and
`--version` never touch the disk and a broken profile only fails the commands that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from gpuctl.cli.output import Output

if TYPE_CHECKING:  # only for annotations inside function bodies, never in Typer signatures
    from gpuctl.config import Settings
    from gpuctl.state import State


@dataclass
class AppContext:
    out: Output
    profile_flag: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, flags: dict[str, Any] | None = None, names: dict[str, str] | None = None) -> Settings:
        """Resolve settings once per run; `flags` are this command's options as dotted keys,
        `names` the flag each came from (`{"modal.gpu": "--gpu"}`), so a bad value is reported
        as the flag the user typed."""
        from gpuctl.config import load_settings

        if flags or self._settings is None:
            self._settings = load_settings(profile=self.profile_flag, flags=flags, flag_names=names)
        return self._settings

    def state(self) -> State:
        """The state for this command's settings: the one way a command gets it."""
        from gpuctl.state import open_for

        return open_for(self.settings())


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):  # a command invoked without the root callback (tests)
        obj = AppContext(out=Output())
        ctx.find_root().obj = obj
    return obj
