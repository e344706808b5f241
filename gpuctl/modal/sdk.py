"""The seam around the modal SDK and CLI: everything gpuctl asks Modal goes through `ModalSDK`.

Owns: the credential check, the Modal secret that holds vLLM's API key, `modal deploy` of
deploy/modal/vllm_app.py, the web-URL lookup, stopping an app, our own timeout around every call,
and mapping every Modal failure onto gpuctl's error tree (one line, secrets redacted).

Must not: import `modal` at module level (~0.3 s, and the import parses ~/.modal.toml), print,
generate keys (the caller generates and stores the API key), decide what to deploy (the spec
and its checks are deploy.py), touch the ledger, or speak HTTP to the endpoint (that is
providers/openai_compat.py).

Every Modal call runs under our own timeout: with Modal unreachable, the SDK and CLI only give
up after ~56 s, and a stuck deploy must not hang gpuctl.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar

from gpuctl.errors import ConfigError, CredentialsError, GpuctlError, ProviderError, UsageError
from gpuctl.events import log_event
from gpuctl.modal.deploy import PROVIDER, ModalDeploySpec, is_valid_name, validate_spec
from gpuctl.redact import redact

# The variable the Modal secret holds; deploy/modal/vllm_app.py passes it to `vllm serve --api-key`.
API_KEY_ENV = "VLLM_API_KEY"
SERVE_FUNCTION = "serve"

CREDENTIALS_HINT = "Run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."

# Rich draws panels around the modal CLI's errors; these are not the message.
_BOX_CHARS = "│┃║╭╮╰╯┌┐└┘─━═┏┓┗┛ \t"

T = TypeVar("T")


@dataclass(frozen=True)
class ModalCredentials:
    """Where the modal SDK will find its token: the env pair, or a profile of Modal's config file."""

    source: Literal["env", "file"]
    path: Path | None = None  # the config file, for source "file"
    profile: str | None = None  # the profile in it that holds the token


class ModalSDK:
    """The seam around the modal SDK and CLI. Tests replace it (or its calls) with pytest-mock.

    Order for a deploy: check_credentials() → ensure_secret() → deploy(). The secret must exist
    first: the app declares it with required_keys, so Modal refuses a deploy without it.
    """

    def __init__(self, *, timeout_s: float = 600.0, lookup_timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s  # `modal deploy` (a first deploy builds the image)
        self.lookup_timeout_s = lookup_timeout_s  # each SDK call: URL lookup, secret, stop

    # -- credentials ------------------------------------------------------------------------

    def check_credentials(self) -> ModalCredentials:
        """Modal credentials are present (env pair or ~/.modal.toml): where they are. No network,
        no modal import."""
        token_id = os.environ.get("MODAL_TOKEN_ID", "").strip()
        token_secret = os.environ.get("MODAL_TOKEN_SECRET", "").strip()
        if token_id and token_secret:
            return ModalCredentials("env")
        if token_id or token_secret:
            missing = "MODAL_TOKEN_SECRET" if token_id else "MODAL_TOKEN_ID"
            raise CredentialsError(f"{missing} is not set, but its pair is", hint=CREDENTIALS_HINT)
        path = Path(os.environ.get("MODAL_CONFIG_PATH") or "~/.modal.toml").expanduser()
        if not path.is_file():
            raise CredentialsError("No Modal credentials found", hint=CREDENTIALS_HINT)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"Cannot read Modal's config {path}: {_one_line(str(exc))}",
                hint="Fix the file, or move it away and run `modal token new`.",
            ) from exc
        # Modal's own rule: MODAL_PROFILE, else the profile marked active, else "default".
        profile = os.environ.get("MODAL_PROFILE") or next(
            (name for name, table in data.items() if isinstance(table, dict) and table.get("active") is True),
            "default",
        )
        table = data.get(profile)
        has_token = isinstance(table, dict) and bool(table.get("token_id")) and bool(table.get("token_secret"))
        has_oauth = isinstance(table, dict) and bool(table.get("oauth_refresh_token"))
        if not (has_token or has_oauth):
            raise CredentialsError(f"{path} has no token for Modal profile {profile!r}", hint=CREDENTIALS_HINT)
        return ModalCredentials("file", path=path, profile=profile)

    # -- the API-key secret -----------------------------------------------------------------

    def ensure_secret(self, name: str, api_key: str) -> None:
        """Create the Modal secret `name` holding VLLM_API_KEY, or overwrite that key in it.

        The key travels only inside the SDK's request, never on a command line.
        """
        if not is_valid_name(name):
            raise UsageError(f"Secret name {name!r} is not a valid Modal name")
        if not api_key:
            raise UsageError("The vLLM API key is empty")
        modal = _import_modal()
        payload = {API_KEY_ENV: api_key}

        def work() -> None:
            try:
                modal.Secret.objects.create(name, payload)
            except modal.exception.AlreadyExistsError:
                # `update` merges: only our key changes. Running containers keep the old key
                # until the redeploy that follows replaces them.
                modal.Secret.from_name(name).update(payload)

        self._call(work, f"saving the API key in Modal secret {name!r}", secrets=(api_key,))

    # -- deploy, look up, stop --------------------------------------------------------------

    def deploy(self, spec: ModalDeploySpec, app_file: Path) -> str:
        """`modal deploy` the app with `spec`, under our timeout; return the web URL of `serve`."""
        validate_spec(spec)
        if not app_file.is_file():
            raise ConfigError(f"Modal app file {app_file} is missing", hint="Restore deploy/ from the gpuctl repository.")
        # A subprocess, not the SDK in a thread: a hung deploy can then actually be killed.
        cmd = [sys.executable, "-m", "modal", "deploy", str(app_file), "--name", spec.app_name]
        env = {**os.environ, **spec.env()}
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=self.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log_event("modal_deploy_failed", app_name=spec.app_name, reason="timeout", seconds=self.timeout_s)
            raise ProviderError(
                f"Modal deploy of {spec.app_name!r} did not finish within {self.timeout_s:.0f} s",
                provider=PROVIDER, kind="timeout",
                hint="Check your network and https://status.modal.com, then retry: "
                "image layers already built are cached, so a retry is faster.",
            ) from exc
        except OSError as exc:
            raise ProviderError(f"Cannot run `modal deploy`: {exc}", provider=PROVIDER, kind="connect") from exc
        if proc.returncode != 0:
            tail = _redact_all("\n".join((proc.stderr or proc.stdout or "").splitlines()[-20:]), _env_secrets())
            log_event("modal_deploy_failed", app_name=spec.app_name, exit_code=proc.returncode, output_tail=tail)
            raise _cli_failure("deploy", proc.returncode, proc.stderr or proc.stdout or "")
        log_event(
            "modal_deployed", app_name=spec.app_name, gpu=spec.gpu, model=spec.model,
            seconds=round(time.monotonic() - started, 1),
        )
        return self.web_url(spec.app_name)

    def web_url(self, app_name: str) -> str:
        """The public URL of the deployed app's `serve` function."""
        modal = _import_modal()

        def work() -> str | None:
            url: str | None = modal.Function.from_name(app_name, SERVE_FUNCTION).get_web_url()
            return url

        url = self._call(work, f"looking up the URL of Modal app {app_name!r}")
        if not url:
            raise ProviderError(
                f"Modal app {app_name!r} has no web URL for {SERVE_FUNCTION!r}",
                provider=PROVIDER, kind="not_found", hint="Redeploy with `gpuctl deploy modal`.",
            )
        return url

    def stop(self, app_name: str) -> bool:
        """Stop the app (all its containers). False when no such app is deployed."""
        modal = _import_modal()

        def work() -> bool:
            try:
                modal.App.lookup(app_name).stop()
            except modal.exception.NotFoundError:
                return False
            return True

        return self._call(work, f"stopping Modal app {app_name!r}")

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], what: str, *, secrets: Iterable[str] = ()) -> T:
        """Run one SDK call in a daemon thread, giving up after lookup_timeout_s.

        A thread cannot be killed, so on timeout it is abandoned: daemon, so it never holds
        the process open.
        """
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # re-raised in the caller's thread below
                box["error"] = exc

        thread = threading.Thread(target=target, name="gpuctl-modal-call", daemon=True)
        thread.start()
        thread.join(self.lookup_timeout_s)
        if thread.is_alive():
            raise ProviderError(
                f"Modal did not answer within {self.lookup_timeout_s:.0f} s while {what}",
                provider=PROVIDER, kind="timeout",
                hint="Check your network and https://status.modal.com, then retry.",
            )
        if "error" in box:
            error: BaseException = box["error"]
            mapped = _map_sdk_error(error, what, secrets=(*secrets, *_env_secrets()))
            if mapped is error:
                raise error
            raise mapped from error
        value: T = box["value"]
        return value


def _import_modal() -> ModuleType:
    """Import the SDK on the paths that need it; a malformed ~/.modal.toml makes the import raise."""
    try:
        import modal
        import modal.exception  # the callers use modal.exception.*
    except Exception as exc:
        if type(exc).__name__ == "InvalidError":
            raise ConfigError(
                f"Modal's config file is invalid: {_one_line(str(exc))}",
                hint="Fix ~/.modal.toml (or MODAL_CONFIG_PATH), or move it away and run `modal token new`.",
            ) from exc
        raise
    return modal


def _map_sdk_error(exc: BaseException, what: str, *, secrets: Iterable[str]) -> BaseException:
    """A modal exception as a gpuctl error. Anything else is a bug and keeps its traceback."""
    from modal import exception as mexc

    detail = _redact_all(_one_line(str(exc)) or type(exc).__name__, secrets)
    if isinstance(exc, mexc.AuthError | mexc.PermissionDeniedError):
        return CredentialsError(f"Modal refused the credentials while {what}: {detail}", hint=CREDENTIALS_HINT)
    if isinstance(exc, mexc.NotFoundError):
        return ProviderError(f"Not found on Modal while {what}: {detail}", provider=PROVIDER, kind="not_found",
                             hint="Deploy first with `gpuctl deploy modal`.")
    if isinstance(exc, mexc.ConnectionError | ConnectionError):
        return ProviderError(f"Cannot reach Modal while {what}: {detail}", provider=PROVIDER, kind="connect",
                             hint="Check your network and https://status.modal.com.")
    if isinstance(exc, mexc.TimeoutError | TimeoutError):
        return ProviderError(f"Modal timed out while {what}: {detail}", provider=PROVIDER, kind="timeout")
    if isinstance(exc, mexc.InvalidError):
        return ProviderError(f"Modal rejected the request while {what}: {detail}", provider=PROVIDER,
                             kind="bad_request")
    if isinstance(exc, mexc.Error):
        return ProviderError(f"Modal failed while {what}: {detail}", provider=PROVIDER)
    return exc  # ours (a GpuctlError) or a bug: re-raised as is, traceback kept


def _cli_failure(command: str, returncode: int, output: str) -> GpuctlError:
    """A failed `modal <command>` as one line: its last meaningful output line, redacted."""
    line = _redact_all(_last_line(output) or f"exit code {returncode}", _env_secrets())
    lowered = line.lower()
    if any(s in lowered for s in ("token missing", "authenticat", "token id and secret", "invalid token", "autherror")):
        return CredentialsError(f"Modal refused the credentials: {line}", hint=CREDENTIALS_HINT)
    if "could not connect to the modal server" in lowered:
        return ProviderError(f"`modal {command}` cannot reach Modal: {line}", provider=PROVIDER, kind="connect",
                             hint="Check your network and https://status.modal.com.")
    if "secret" in lowered and "not found" in lowered:
        return ProviderError(f"`modal {command}` failed: {line}", provider=PROVIDER, kind="not_found",
                             hint="`gpuctl deploy modal` creates the API-key secret; run it again.")
    return ProviderError(f"`modal {command}` failed (exit {returncode}): {line}", provider=PROVIDER,
                         hint="Modal's last output lines are in gpuctl's event log (-v shows them).")


def _last_line(output: str) -> str:
    for raw in reversed(output.splitlines()):
        line = raw.strip(_BOX_CHARS)
        if line:
            # gpuctl prints its own "Error: " in front.
            return " ".join(line.removeprefix("Error:").split())
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def _env_secrets() -> tuple[str, ...]:
    return tuple(v for v in (os.environ.get("MODAL_TOKEN_ID"), os.environ.get("MODAL_TOKEN_SECRET")) if v)


def _redact_all(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        # A very short value would blank ordinary letters; real keys and tokens are long.
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return redact(text)
