"""`gpuctl serve`: the OpenAI-compatible gateway over the fallback chain, and the admin API.

Thin: check the options, bind the socket, hand over to `gpuctl.serve.server`, and render the
start-up lines (URL, providers, who answers now) on stderr; stdout carries the JSON access log
(with --json the start-up is one JSON line there too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.errors import GpuctlError
    from gpuctl.routing.status import StatusReport
    from gpuctl.serve.options import ServeOptions


def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", metavar="ADDR", help="Address to listen on (default 127.0.0.1; serve.host)."),
    port: int = typer.Option(None, "--port", metavar="PORT", help="Port (default 8080; 0 picks a free one; serve.port)."),
    workers: int = typer.Option(None, "--workers", metavar="N", help="Worker processes (default 1; serve.workers)."),
    insecure: bool = typer.Option(False, "--insecure", help="Listen beyond loopback without client keys "
                                                           "(only behind a proxy that checks keys)."),
) -> None:
    """Serve an OpenAI-compatible API (Modal → Vast.ai → Anthropic) and the admin API.

    Example: gpuctl serve --port 8080
    """
    from gpuctl.serve import server
    from gpuctl.serve.options import serve_options

    actx = app_context(ctx)
    out = actx.out
    settings = actx.settings()
    options = serve_options(settings, host=host, port=port, workers=workers, insecure=insecure,
                            profile=actx.profile_flag)
    with actx.state():  # a damaged or locked ledger fails here, in one line, before we listen
        pass
    sock = server.bind(options)
    options = server.bound(options, sock)
    if options.workers > 1:  # the workers each start their own monitor; the parent says it once
        from gpuctl.ops.status import collect_status

        report, error = _report(collect_status, settings)
        _started(out, options, report, error)
        server.run(settings, options, sock)
    else:
        server.run(settings, options, sock, on_ready=lambda gw, report, error: _started(out, gw.options, report, error))
    out.info("gpuctl serve stopped.")


def _report(collect: Any, settings: Any) -> tuple[StatusReport | None, GpuctlError | None]:
    from gpuctl.errors import GpuctlError

    try:
        return collect(settings), None
    except GpuctlError as exc:
        return None, exc


def _started(out: Output, options: ServeOptions, report: StatusReport | None, error: GpuctlError | None) -> None:
    admin = "on" if options.admin_token else "off (set ADMIN_TOKEN)"
    keys = ", ".join(options.keys.names) if options.keys else "none (loopback only)"
    if out.json_mode:
        out.print_json({"event": "serve_started", "url": options.url, "base_url": options.url + "/v1",
                        "models": list(options.models), "workers": options.workers, "client_keys": options.keys.names,
                        "admin_api": bool(options.admin_token), "status": report.as_dict() if report else None,
                        "error": error.message if error else None})
        return
    out.info(f"gpuctl serve on {options.url}  (OpenAI base_url: {options.url}/v1, model {options.models[0]})")
    out.info(f"  workers {options.workers}, client keys: {keys}, admin API: {admin}")
    if report is not None:
        for p in report.providers:
            marker = "→" if p.name == report.current else " "
            out.info(f"  {marker} {p.name}: {p.status}" + (f" ({p.detail})" if p.detail and p.configured else ""))
        out.info(f"  answering now: {report.current or 'nobody'} — {report.reason}")
    elif error is not None:
        out.warn(f"no provider can answer yet: {error.message}" + (f" ({error.hint})" if error.hint else ""))
    if options.insecure and not options.keys:
        out.warn("--insecure: no client keys; anyone who reaches this address spends your GPUs and tokens")
