"""The seam around the modal SDK (gpuctl/modal/sdk.py), with Modal replaced by mocks.

Modal speaks gRPC, so there is no practical fake server: the `modal deploy` subprocess and the
SDK module are mocked, and real `modal.exception` classes are raised through them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gpuctl.errors import ConfigError, CredentialsError, GpuctlError, ProviderError, UsageError
from gpuctl.modal import sdk as modal_provider
from gpuctl.modal.deploy import ModalDeploySpec
from gpuctl.modal.sdk import ModalCredentials, ModalSDK

URL = "https://acme--multi-agent-vllm-inference-serve.modal.run"


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "vllm_app.py"
    path.write_text("# stand-in: `modal deploy` is mocked\n")
    return path


@pytest.fixture
def mexc() -> Any:
    from modal import exception

    return exception


@pytest.fixture
def deploy_fails(mocker: Any, app_file: Path) -> Any:
    """`modal deploy` exits with `code` and `stderr`; returns the error ModalSDK.deploy raised."""

    def run(code: int, stderr: str) -> GpuctlError:
        mocker.patch("gpuctl.modal.sdk.subprocess.run", return_value=subprocess.CompletedProcess([], code, "", stderr))
        with pytest.raises(GpuctlError) as caught:
            ModalSDK().deploy(ModalDeploySpec(), app_file)
        return caught.value

    return run


def _fake_modal(mexc: Any, **parts: Any) -> SimpleNamespace:
    return SimpleNamespace(exception=mexc, **parts)


def _function_with_url(url: str | None, calls: list[tuple[str, str]] | None = None) -> SimpleNamespace:
    def from_name(app: str, fn: str) -> SimpleNamespace:
        if calls is not None:
            calls.append((app, fn))
        return SimpleNamespace(get_web_url=lambda: url)

    return SimpleNamespace(from_name=from_name)


# -- deploy ----------------------------------------------------------------------------------


def test_deploy_runs_modal_deploy_with_the_spec_and_returns_the_url(
    mocker: Any, mexc: Any, app_file: Path
) -> None:
    run = mocker.patch(
        "gpuctl.modal.sdk.subprocess.run",
        return_value=subprocess.CompletedProcess([], 0, stdout="✓ App deployed!", stderr=""),
    )
    lookups: list[tuple[str, str]] = []
    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, Function=_function_with_url(URL, lookups)))
    spec = ModalDeploySpec(gpu="L40S", max_containers=3, app_name="team-llm")

    assert ModalSDK(timeout_s=42).deploy(spec, app_file) == URL

    args, kwargs = run.call_args
    assert args[0] == [sys.executable, "-m", "modal", "deploy", str(app_file), "--name", "team-llm"]
    assert kwargs["timeout"] == 42
    assert kwargs["stdin"] is subprocess.DEVNULL
    env = kwargs["env"]
    assert env["GPUCTL_MODAL_GPU"] == "L40S"
    assert env["GPUCTL_MODAL_MAX_CONTAINERS"] == "3"
    assert env["GPUCTL_MODAL_APP_NAME"] == "team-llm"
    assert "VLLM_API_KEY" not in env  # the key lives only in the Modal secret
    assert lookups == [("team-llm", "serve")]


def test_deploy_validates_before_running_anything(mocker: Any, app_file: Path) -> None:
    run = mocker.patch("gpuctl.modal.sdk.subprocess.run")
    with pytest.raises(UsageError):
        ModalSDK().deploy(ModalDeploySpec(gpu="Z9"), app_file)
    run.assert_not_called()


def test_deploy_timeout_is_one_line(mocker: Any, app_file: Path) -> None:
    mocker.patch(
        "gpuctl.modal.sdk.subprocess.run",
        side_effect=subprocess.TimeoutExpired(cmd=["modal"], timeout=5),
    )
    with pytest.raises(ProviderError) as caught:
        ModalSDK(timeout_s=5).deploy(ModalDeploySpec(), app_file)
    err = caught.value
    assert err.kind == "timeout"
    assert "within 5 s" in err.message and "\n" not in err.message
    assert err.exit_code == 1


def test_deploy_without_a_token_is_a_credentials_error(deploy_fails: Any) -> None:
    # The modal CLI's real words when no token is configured.
    err = deploy_fails(1, (
        "Error: Token missing. Could not authenticate client. If you have token credentials, see "
        "modal.com/docs/sdk/py/latest/config for setup help. If you are a new user, register an "
        "account at modal.com, then run `modal token new`.\n"
    ))
    assert isinstance(err, CredentialsError) and err.exit_code == 3
    assert err.hint is not None and "modal token new" in err.hint
    assert "MODAL_TOKEN_ID" in err.hint


def test_deploy_unreachable_modal_is_a_connect_error(deploy_fails: Any) -> None:
    err = deploy_fails(1, "Error: Could not connect to the Modal server.\n")
    assert isinstance(err, ProviderError) and err.kind == "connect"


def test_deploy_failure_shows_the_last_line_with_secrets_redacted(deploy_fails: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "plainsecretvalue")
    err = deploy_fails(2, (
        "Building image im-123\n"
        "╭─ Error ──────────────────────────────╮\n"
        "│ Image build failed for as-abcdefghijklmnopqrst plainsecretvalue │\n"
        "╰──────────────────────────────────────╯\n"
    ))
    assert isinstance(err, ProviderError)
    message = err.message
    assert "exit 2" in message and "Image build failed" in message
    assert "plainsecretvalue" not in message and "as-abcdefghijklmnopqrst" not in message
    assert "\n" not in message and "│" not in message


def test_deploy_missing_app_file_is_a_config_error(mocker: Any, tmp_path: Path) -> None:
    run = mocker.patch("gpuctl.modal.sdk.subprocess.run")
    with pytest.raises(ConfigError) as caught:
        ModalSDK().deploy(ModalDeploySpec(), tmp_path / "nope.py")
    assert "nope.py" in caught.value.message and caught.value.exit_code == 3
    run.assert_not_called()


# -- SDK calls: URL lookup, secret, stop -----------------------------------------------------


@pytest.fixture
def lookup_raises(mocker: Any, mexc: Any) -> Any:
    """The SDK's URL lookup raises `exc`; returns the error ModalSDK.web_url raised."""

    def run(exc: BaseException, app_name: str = "multi-agent-vllm-inference") -> BaseException:
        def from_name(app: str, fn: str) -> Any:
            raise exc

        fake = _fake_modal(mexc, Function=SimpleNamespace(from_name=from_name))
        mocker.patch.object(modal_provider, "_import_modal", return_value=fake)
        with pytest.raises(BaseException) as caught:
            ModalSDK().web_url(app_name)
        return caught.value

    return run


def test_sdk_auth_error_becomes_credentials_error(lookup_raises: Any, mexc: Any) -> None:
    err = lookup_raises(mexc.AuthError("Token missing. Could not authenticate client."))
    assert isinstance(err, CredentialsError)
    assert "Token missing" in err.message
    assert err.exit_code == 3


def test_sdk_not_found_is_a_not_found_provider_error(lookup_raises: Any, mexc: Any) -> None:
    err = lookup_raises(mexc.NotFoundError("App 'gone' not found in environment 'main'"), "gone")
    assert isinstance(err, ProviderError) and err.kind == "not_found"


@pytest.mark.parametrize(
    ("name", "error_type", "kind", "words"),
    [
        ("PermissionDeniedError", CredentialsError, None, "Modal refused the credentials while looking up"),
        ("ConnectionError", ProviderError, "connect", "Cannot reach Modal while looking up"),
        ("TimeoutError", ProviderError, "timeout", "Modal timed out while looking up"),
        ("InvalidError", ProviderError, "bad_request", "Modal rejected the request while looking up"),
        ("Error", ProviderError, None, "Modal failed while looking up"),
    ],
)
def test_every_modal_error_is_one_gpuctl_error(
    lookup_raises: Any, mexc: Any, name: str, error_type: type[GpuctlError], kind: str | None, words: str
) -> None:
    err = lookup_raises(getattr(mexc, name)("it went\nwrong"))
    assert type(err) is error_type and err.message.startswith(words)
    assert err.message.endswith(": it went wrong")  # one line
    if kind is not None:
        assert isinstance(err, ProviderError) and err.kind == kind
    assert isinstance(err.__cause__, getattr(mexc, name))


def test_app_without_web_url_is_an_error(mocker: Any, mexc: Any) -> None:
    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, Function=_function_with_url(None)))
    with pytest.raises(ProviderError, match="no web URL"):
        ModalSDK().web_url("x")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let the abandoned worker thread finish


def test_a_hung_sdk_call_times_out(mocker: Any, mexc: Any, release: threading.Event) -> None:
    def from_name(app: str, fn: str) -> Any:
        release.wait(10)  # stands for Modal's ~56 s wait on an unreachable server
        return SimpleNamespace(get_web_url=lambda: URL)

    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, Function=SimpleNamespace(from_name=from_name)))
    with pytest.raises(ProviderError) as caught:
        ModalSDK(lookup_timeout_s=0.05).web_url("slow")
    assert caught.value.kind == "timeout"
    assert "\n" not in caught.value.message


def test_a_bug_in_an_sdk_call_keeps_its_type(lookup_raises: Any) -> None:
    err = lookup_raises(KeyError("bug"))
    assert type(err) is KeyError and err.args == ("bug",) and err.__cause__ is None


class _Secrets:
    """Stands in for modal.Secret: records what would be sent."""

    def __init__(self, mexc: Any, *, exists: bool) -> None:
        self.mexc, self.exists = mexc, exists
        self.created: list[tuple[str, dict[str, str]]] = []
        self.updated: list[tuple[str, dict[str, str]]] = []
        self.objects = SimpleNamespace(create=self._create)

    def _create(self, name: str, env: dict[str, str]) -> None:
        if self.exists:
            raise self.mexc.AlreadyExistsError(f"Secret {name!r} already exists")
        self.created.append((name, env))

    def from_name(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(update=lambda env: self.updated.append((name, env)))


def test_ensure_secret_creates_it(mocker: Any, mexc: Any) -> None:
    secrets = _Secrets(mexc, exists=False)
    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, Secret=secrets))
    run = mocker.patch("gpuctl.modal.sdk.subprocess.run")
    ModalSDK().ensure_secret("gpuctl-vllm-api-key", "key-123")
    assert secrets.created == [("gpuctl-vllm-api-key", {"VLLM_API_KEY": "key-123"})]
    run.assert_not_called()  # never on a command line


def test_ensure_secret_overwrites_the_key_of_an_existing_secret(mocker: Any, mexc: Any) -> None:
    secrets = _Secrets(mexc, exists=True)
    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, Secret=secrets))
    ModalSDK().ensure_secret("gpuctl-vllm-api-key", "key-456")
    assert secrets.updated == [("gpuctl-vllm-api-key", {"VLLM_API_KEY": "key-456"})]


def test_ensure_secret_errors_never_echo_the_key(mocker: Any, mexc: Any) -> None:
    def create(name: str, env: dict[str, str]) -> None:
        raise mexc.InvalidError(f"bad value {env['VLLM_API_KEY']}")

    fake = _fake_modal(mexc, Secret=SimpleNamespace(objects=SimpleNamespace(create=create)))
    mocker.patch.object(modal_provider, "_import_modal", return_value=fake)
    with pytest.raises(ProviderError) as caught:
        ModalSDK().ensure_secret("s", "very-private-key")
    assert caught.value.kind == "bad_request" and "bad value" in caught.value.message
    assert "very-private-key" not in caught.value.message


@pytest.mark.parametrize(("name", "key", "message"), [("s", "", "empty"), ("my secret", "key-1", "valid Modal name")])
def test_ensure_secret_refuses_before_anything_is_sent(mocker: Any, name: str, key: str, message: str) -> None:
    sdk_import = mocker.patch.object(modal_provider, "_import_modal")
    with pytest.raises(UsageError, match=message):
        ModalSDK().ensure_secret(name, key)
    sdk_import.assert_not_called()


def test_stop_stops_the_app(mocker: Any, mexc: Any) -> None:
    stopped: list[str] = []
    app_cls = SimpleNamespace(lookup=lambda name: SimpleNamespace(stop=lambda: stopped.append(name)))
    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, App=app_cls))
    assert ModalSDK().stop("team-llm") is True
    assert stopped == ["team-llm"]


def test_stop_of_a_missing_app_returns_false(mocker: Any, mexc: Any) -> None:
    def lookup(name: str) -> Any:
        raise mexc.NotFoundError(f"App {name!r} not found")

    mocker.patch.object(modal_provider, "_import_modal", return_value=_fake_modal(mexc, App=SimpleNamespace(lookup=lookup)))
    assert ModalSDK().stop("gone") is False


# -- check_credentials -----------------------------------------------------------------------


def test_credentials_from_the_env_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-1234567890")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-1234567890")
    (Path.home() / ".modal.toml").write_text("token_id = [\n")  # the env pair wins: the file is not read
    assert ModalSDK().check_credentials() == ModalCredentials("env")


def test_half_an_env_pair_names_the_missing_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-1234567890")
    with pytest.raises(CredentialsError, match="MODAL_TOKEN_SECRET"):
        ModalSDK().check_credentials()


def test_no_credentials_at_all_gives_the_fix() -> None:
    # conftest: HOME is an empty temp dir and no MODAL_* variables are set.
    with pytest.raises(CredentialsError) as caught:
        ModalSDK().check_credentials()
    assert caught.value.exit_code == 3
    assert caught.value.hint == "Run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."


def test_credentials_from_the_active_profile_in_modal_toml() -> None:
    config = Path.home() / ".modal.toml"
    config.write_text('[old]\ntoken_id = ""\n\n[acme]\ntoken_id = "ak-x"\ntoken_secret = "as-y"\nactive = true\n')
    assert ModalSDK().check_credentials() == ModalCredentials("file", path=config, profile="acme")


def test_credentials_from_modal_profile_with_an_oauth_token(modal_config: Callable[..., Path]) -> None:
    config = modal_config('[default]\ntoken_id = "ak-x"\ntoken_secret = "as-y"\n\n[work]\noauth_refresh_token = "r"\n',
                          profile="work")
    assert ModalSDK().check_credentials() == ModalCredentials("file", path=config, profile="work")


def test_modal_toml_without_a_token_for_the_profile(modal_config: Callable[..., Path]) -> None:
    modal_config('[acme]\ntoken_id = "ak-x"\ntoken_secret = "as-y"\n', profile="other")
    with pytest.raises(CredentialsError, match="'other'"):
        ModalSDK().check_credentials()


def test_malformed_modal_toml_is_a_config_error() -> None:
    (Path.home() / ".modal.toml").write_text("token_id = [\n")
    with pytest.raises(ConfigError) as caught:
        ModalSDK().check_credentials()
    assert not isinstance(caught.value, CredentialsError)
    assert caught.value.hint is not None and "modal token new" in caught.value.hint
