"""The original system's admin API, behind `Authorization: Bearer <ADMIN_TOKEN>`:

    GET  /api/admin/vllm/status          {"status", "endpoint", "provider"} + gpuctl's providers
    POST /api/admin/vllm/launch          {gpu, max_dph, dry_run} → 202 {id, ...} (a dry run: 200)
    GET  /api/admin/vllm/launch/{id}     the launch's progress; DELETE stops it
    POST /api/admin/vllm/destroy         {id | label | all, force, dry_run}
    GET  /api/admin/cost                 the `gpuctl cost report` data (?since=7d&by=provider)

Each route calls what the command calls (`routing` for status, `gpuctl.ops` for the rest); the
synchronous Vast.ai and ledger work runs in a thread, never on the event loop. No token
configured: every admin route is 404 (off, never open); a missing or wrong one is 401 with
`WWW-Authenticate: Bearer`; the token is compared in constant time.

Must not: do the work itself (ops does), or answer an admin route without the token.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from urllib.parse import parse_qs

from gpuctl.errors import NoProviderError, PartialError, ProviderError, UsageError
from gpuctl.serve.asgi import Receive, Scope, Send, bearer, read_body, send_bytes
from gpuctl.serve.errors import ApiError, api_error
from gpuctl.serve.gateway import WWW_AUTHENTICATE, Gateway
from gpuctl.serve.openai_wire import parse_json

PREFIX = "/api/admin/"
LAUNCH_PREFIX = "/api/admin/vllm/launch/"


def check(gw: Gateway, scope: Scope) -> None:
    """404 when the admin API is off, 401 without the right token."""
    token = gw.options.admin_token
    if token is None:
        raise ApiError(404, "the admin API is off: set ADMIN_TOKEN (or serve.admin_token) to turn it on",
                       code="admin_disabled")
    given = bearer(scope)
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "the admin API needs Authorization: Bearer <ADMIN_TOKEN>", "authentication_error",
                       "invalid_admin_token", headers=[WWW_AUTHENTICATE])


async def status(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    check(gw, scope)
    assert gw.manager is not None
    try:
        data = await gw.manager.get_vllm_status()
    except NoProviderError as exc:  # nothing to route to yet (e.g. only a Vast.ai key): say so, 200
        data = {"status": "unconfigured", "endpoint": None, "provider": None, "reason": exc.message,
                "hint": exc.hint, "providers": [{"provider": s.name, "configured": False,
                                                 "status": s.idle_note or "unconfigured", "detail": s.why_not}
                                                for s in gw.manager.slots()]}
    data["launch"] = gw.launches.running()
    return await _json(send, 200, data)


async def launch(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    check(gw, scope)
    body = await _body(gw, scope, receive)
    gpu, max_dph, dry_run = body.get("gpu"), body.get("max_dph"), body.get("dry_run", False)
    if gpu is not None and not isinstance(gpu, str):
        raise ApiError(400, "'gpu' must be a GPU name, e.g. \"RTX 3090\"", param="gpu", code="invalid_type")
    if max_dph is not None and (isinstance(max_dph, bool) or not isinstance(max_dph, int | float) or max_dph <= 0):
        raise ApiError(400, "'max_dph' must be a positive number of $/h", param="max_dph", code="invalid_value")
    if not isinstance(dry_run, bool):
        raise ApiError(400, "'dry_run' must be true or false", param="dry_run", code="invalid_type")
    if dry_run:
        data = await asyncio.to_thread(gw.launches.plan, gpu=gpu, max_dph=max_dph)
        return await _json(send, 200, data)
    return await _json(send, 202, gw.launches.start(gpu=gpu, max_dph=max_dph))


async def launch_progress(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    check(gw, scope)
    launch_id = scope["path"][len(LAUNCH_PREFIX):]
    record = gw.launches.stop(launch_id) if scope["method"] == "DELETE" else gw.launches.get(launch_id)
    if record is None:
        raise ApiError(404, f"no launch {launch_id!r}", code="launch_not_found")
    return await _json(send, 200, record)


async def destroy(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    check(gw, scope)
    body = await _body(gw, scope, receive)
    named = [k for k in ("id", "label", "all") if body.get(k) not in (None, False)]
    if len(named) != 1:
        raise ApiError(400, "name exactly one of: 'id' (a Vast.ai instance id), 'label' (a gpuctl label), "
                            "or 'all': true", code="invalid_value")
    force, dry_run = body.get("force", False), body.get("dry_run", False)
    if not isinstance(force, bool) or not isinstance(dry_run, bool):
        raise ApiError(400, "'force' and 'dry_run' are true or false", code="invalid_type")
    target = body[named[0]]
    if named[0] == "all" and target is not True:
        raise ApiError(400, "'all' must be true", param="all", code="invalid_type")
    if named[0] == "id" and (isinstance(target, bool) or not isinstance(target, int | str)):
        raise ApiError(400, "'id' must be a Vast.ai instance id", param="id", code="invalid_type")
    if named[0] == "label" and not isinstance(target, str):
        raise ApiError(400, "'label' must be a gpuctl label (gpuctl:…)", param="label", code="invalid_type")
    running = gw.launches.running()
    if running is not None and not dry_run:
        raise ApiError(409, f"launch {running} is running: stop it first (DELETE /api/admin/vllm/launch/{running}),"
                            " or wait for it", "conflict", "launch_running", extra={"running": running})
    from gpuctl.ops import destroy as ops

    asked = ops.request("vastai" if named[0] == "all" else str(target), None, all_=named[0] == "all", force=force)
    try:
        data = await asyncio.to_thread(_destroy, gw, asked, dry_run)
    except (PartialError, ProviderError) as exc:
        results = getattr(exc, "data", None)
        if not isinstance(results, dict):
            raise
        error = api_error(exc)  # some (207) or every (502) destroy failed: the results say which
        return await _json(send, 207 if isinstance(exc, PartialError) else error.status,
                           {"error": {"message": exc.message, "type": error.type}, **results})
    finally:
        if not dry_run:
            gw.schedule_reload()  # a destroyed instance must leave the routing at once
    return await _json(send, 200, data)


def _destroy(gw: Gateway, asked: Any, dry_run: bool) -> dict[str, Any]:
    from gpuctl.ops import destroy as ops
    from gpuctl.state import open_for

    settings = gw.settings
    with ops.session(settings) as vast, open_for(settings) as state:
        plan = vast.plan(state, asked)
        plan.check_listed()
        if dry_run or not plan.targets:
            return {"dry_run": dry_run, **plan.as_dict()}
        return dict(vast.execute(state, plan).as_dict())


async def cost(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    check(gw, scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    since, by = query.get("since", ["30d"])[-1], query.get("by", ["provider"])[-1]
    from gpuctl.ops.cost import cost_report

    try:
        view = await asyncio.to_thread(cost_report, gw.settings, since=since, by=by)
    except UsageError as exc:
        raise ApiError(400, exc.message, param="since" if "since" in exc.message else "by") from None
    return await _json(send, 200, {**view.data, "notes": view.notes, "warnings": view.warnings})


async def _body(gw: Gateway, scope: Scope, receive: Receive) -> dict[str, Any]:
    raw = await read_body(scope, receive, gw.options.max_body_bytes)
    return parse_json(raw) if raw.strip() else {}


async def _json(send: Send, status: int, data: Any) -> dict[str, Any]:
    import json

    await send_bytes(send, status, json.dumps(data, default=str).encode())
    return {"status": status}
