"""Vast.ai: gpuctl's own small REST client; the records it returns are in `api_types`.

The client owns the calls in facts/PROVIDERS.md ("Vast.ai REST API") — search offers, create,
list (following `next_token`), show, label, destroy, current user — and maps every failure to
`ProviderError(provider="vastai", kind=...)`. Timeouts and retries (429/502/503/504) come from
`gpuctl.http.build_client`; a create is never re-sent, except after a 429 with Retry-After.

Why not the `vastai` SDK: it is synchronous `requests` code with a fixed 120 s timeout, untyped
errors and exact pins of heavy packages; a dozen typed calls over httpx are easier to test.

Must not: put the API key in a URL, a message or a log line; print; decide anything about
launching or cleaning up (the rest of `gpuctl.vastai`, built on this client); treat an empty or
malformed instance list as proof that nothing is running (callers cross-check the ledger).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.http.client import RETRY_RATE_LIMITED_ONLY, Timeouts, build_client, redact
from gpuctl.vastai.api_types import (
    PROVIDER,
    Instance,
    Listing,
    Offer,
    as_int,
    build_search_query,
    malformed,
    require_mapping,
)

log = logging.getLogger("gpuctl.providers.vastai")

DEFAULT_API_URL = "https://console.vast.ai"
LIST_PAGE_LIMIT = 25
# A list that pages this many times is looping, not long: stop rather than spin.
_MAX_LIST_PAGES = 1000
# Vast's API answers in well under a second; waiting 2 minutes (the cold-start budget other
# clients need) would only delay a cleanup.
DEFAULT_TIMEOUTS = Timeouts(connect=5.0, first_byte=30.0, read=30.0, write=10.0, pool=5.0)

AUTH_HINT = "Set VASTAI_API_KEY, or run `gpuctl profile set vastai.api_key` with a key from your Vast.ai account."


class VastAIClient:
    """A synchronous client for the Vast.ai REST API (`gpuctl.VastAIClient`, the name Python
    users already import)."""

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        timeouts: Timeouts | None = None,
        retries: int = 3,
    ) -> None:
        if not api_key or not api_key.strip():
            raise CredentialsError("No Vast.ai API key.", hint=AUTH_HINT)
        self.api_url = api_url.rstrip("/")
        # Kept only to scrub it from any text we pass on; it lives in the client's headers.
        self._secret = api_key.strip()
        self._http = build_client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self._secret}", "Accept": "application/json"},
            timeouts=timeouts or DEFAULT_TIMEOUTS,
            retries=retries,
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"VastAIClient(api_url={self.api_url!r})"

    # -- context manager -----------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VastAIClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- API -----------------------------------------------------------------------------

    def search_offers(
        self,
        *,
        gpu_name: str,
        num_gpus: int = 1,
        min_gpu_ram_gb: float | None = None,
        max_dph: Decimal | float | None = None,
        min_reliability: float | None = None,
        min_inet_down: float | None = None,
        min_cuda: float | None = None,
        disk_gb: float = 40.0,
        exclude_machine_ids: Iterable[int] = (),
    ) -> list[Offer]:
        """Verified, rentable on-demand offers for one GPU model, cheapest first.

        `min_reliability` and `max_dph` are strict bounds (`reliability>X`, `dph<X`), as the
        official client's query language sends them; `disk_gb` is priced into `dph_total`.
        """
        excluded = sorted({int(m) for m in exclude_machine_ids})
        query = build_search_query(
            gpu_name=gpu_name,
            num_gpus=num_gpus,
            min_gpu_ram_gb=min_gpu_ram_gb,
            max_dph=max_dph,
            min_reliability=min_reliability,
            min_inet_down=min_inet_down,
            min_cuda=min_cuda,
            disk_gb=disk_gb,
            exclude_machine_ids=excluded,
        )
        what = f"offer search for {gpu_name}"
        data = self._call("POST", "/api/v0/bundles/", what, json_body=query)
        offers_json = data.get("offers")
        if not isinstance(offers_json, list):
            raise malformed(what, "the reply has no `offers` list")
        offers = [Offer.from_json(require_mapping(o, what)) for o in offers_json]
        # The server orders by price; re-sorting (stably) keeps "cheapest" true whatever it did,
        # and a machine that failed us before never comes back, whatever the server filtered.
        skip = set(excluded)
        return sorted((o for o in offers if o.machine_id not in skip), key=lambda o: o.dph_total)

    def create_instance(
        self,
        offer_id: int,
        *,
        image: str,
        env: Mapping[str, str],
        args: Sequence[str],
        disk_gb: float,
        label: str,
    ) -> int:
        """Rent `offer_id` on demand; returns the new instance id (it bills from now on).

        `env` holds docker options as keys too, e.g. `{"-p 8000:8000": "1", "HF_TOKEN": ...}`.
        A create is never re-sent, whatever failed (5xx, even 503; a timeout; a dropped or
        refused connection): a duplicate would bill. The one exception is a 429 with
        Retry-After, which proves nothing was done. Any other failure may still have created an
        instance: the caller looks for its label (see `gpuctl.vastai.attempt`).
        """
        body = {
            "client_id": "me",
            "image": image,
            "env": dict(env),
            "disk": float(disk_gb),
            "label": label,
            "onstart": None,
            "runtype": "args",
            "args": list(args),
            "price": None,
        }
        what = f"create instance from offer {offer_id}"
        data = self._call("PUT", f"/api/v0/asks/{int(offer_id)}/", what, json_body=body,
                          retry=RETRY_RATE_LIMITED_ONLY)
        new_id = as_int(data.get("new_contract"))
        if new_id is None:
            raise malformed(what, "the reply has no `new_contract` id")
        return new_id

    def list_instances(self) -> list[Instance]:
        """Every instance on the account (`listing().instances`). An empty list is returned as
        is: only the caller's ledger can tell that it is wrong."""
        return list(self.listing().instances)

    def listing(self) -> Listing:
        """Every instance on the account, following `next_token` across pages, with the total
        the server reported (`Listing.shows_absence` says what an empty one is worth).

        A page without an `instances` list, a looping token, or fewer instances than the
        reported `total_instances` is `ProviderError(kind="malformed")`.
        """
        what = "instance list"
        found: dict[int, Instance] = {}
        totals: list[int] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(_MAX_LIST_PAGES):
            params = {
                "select_filters": json.dumps({}),
                "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
                "limit": json.dumps(LIST_PAGE_LIMIT),
            }
            if token is not None:
                # Sent bare, as the official client sends string values (and as Vast issued it).
                params["after_token"] = token
            data = self._call("GET", "/api/v1/instances/", what, params=params)
            page = data.get("instances")
            if not isinstance(page, list):
                raise malformed(what, "a page has no `instances` list")
            for item in page:
                inst = Instance.from_json(require_mapping(item, what))
                found[inst.id] = inst
            total = data.get("total_instances")
            if isinstance(total, int) and not isinstance(total, bool):
                totals.append(total)
            next_token = data.get("next_token")
            if next_token in (None, ""):
                break
            token = str(next_token)
            if token in seen_tokens:
                raise malformed(what, "the server repeated a page token")
            seen_tokens.add(token)
        else:
            raise malformed(what, f"more than {_MAX_LIST_PAGES} pages")
        # Instances may come and go between pages, so only a shortfall below the smallest
        # total reported is proof that pages went missing.
        if totals and len(found) < min(totals):
            raise malformed(what, f"got {len(found)} instances of the {min(totals)} reported")
        return Listing(tuple(sorted(found.values(), key=lambda i: i.id)), min(totals) if totals else None)

    def get_instance(self, instance_id: int) -> Instance | None:
        """One instance, or None when Vast says it is gone (`{"instances": null}`)."""
        what = f"show instance {instance_id}"
        data = self._call("GET", f"/api/v0/instances/{int(instance_id)}/", what, params={"owner": "me"})
        if "instances" not in data:
            raise malformed(what, "the reply has no `instances` field")
        item = data["instances"]
        if item is None:
            return None
        return Instance.from_json(require_mapping(item, what))

    def set_label(self, instance_id: int, label: str) -> None:
        self._call(
            "PUT",
            f"/api/v0/instances/{int(instance_id)}/",
            f"label instance {instance_id}",
            json_body={"label": label},
            idempotent=True,  # setting the same label twice is harmless
        )

    def destroy_instance(self, instance_id: int) -> None:
        """Destroy (stop billing). An id Vast no longer knows raises kind "not_found": the
        caller decides whether that means "already gone" (check with `get_instance`)."""
        self._call("DELETE", f"/api/v0/instances/{int(instance_id)}/", f"destroy instance {instance_id}", json_body={})

    def current_user(self) -> dict[str, Any]:
        """The account, including `balance` and `credit`."""
        return self._call("GET", "/api/v0/users/current", "current user")

    # -- plumbing ------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self._secret, "***"))

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        retry: str | None = None,
    ) -> dict[str, Any]:
        """One request; a JSON object back, or a ProviderError saying what failed and how."""
        extensions: dict[str, Any] = {}
        if idempotent is not None:
            extensions["idempotent"] = idempotent
        if retry is not None:
            extensions["retry"] = retry
        try:
            response = self._http.request(
                method,
                path,
                json=json_body,
                params=dict(params) if params is not None else None,
                extensions=extensions or None,
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"Vast.ai {what} timed out ({type(exc).__name__}).", provider=PROVIDER, kind="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderError(
                f"Cannot reach the Vast.ai API at {self.api_url} for {what}: {self._scrub(str(exc)) or type(exc).__name__}.",
                provider=PROVIDER,
                kind="connect",
                hint="Check the network, or the API URL (vastai.api_url / VAST_URL).",
            ) from exc

        log.debug("vastai %s %s -> %d", method, path, response.status_code)
        return read_reply(response, what, self._scrub)


def read_reply(response: httpx.Response, what: str, scrub: Callable[[str], str]) -> dict[str, Any]:
    """A reply as a JSON object, or the ProviderError its status says (`kind` from the status:
    auth, bad_request, not_found, rate_limit, http; a 200 that is no JSON object is malformed,
    one with `success: false` is http). `scrub` removes the key from any text passed on."""
    status = response.status_code
    body: Any
    try:
        body = response.json() if response.content.strip() else {}
    except ValueError:
        body = None
    if status in (401, 403):
        raise ProviderError(
            f"Vast.ai refused the API key for {what} (HTTP {status}: {vast_message(body, response, scrub)}).",
            provider=PROVIDER,
            kind="auth",
            status=status,
            hint=AUTH_HINT,
        )
    if status >= 400:
        kind = {400: "bad_request", 404: "not_found", 429: "rate_limit"}.get(status, "http")
        raise ProviderError(
            f"Vast.ai {what} failed: HTTP {status}: {vast_message(body, response, scrub)}.",
            provider=PROVIDER,
            kind=kind,
            status=status,
        )
    if body is None:
        raise malformed(what, f"the reply is not JSON: {scrub(response.text[:120])!r}", status)
    if not isinstance(body, dict):
        raise malformed(what, f"expected a JSON object, got {type(body).__name__}", status)
    if body.get("success") is False:
        raise ProviderError(
            f"Vast.ai {what} failed: {vast_message(body, response, scrub)}.",
            provider=PROVIDER,
            kind="http",
            status=status,
        )
    return body


def vast_message(body: Any, response: httpx.Response, scrub: Callable[[str], str]) -> str:
    """Vast's own words (`msg`, else `error`), else the reason phrase; scrubbed."""
    text = ""
    if isinstance(body, dict):
        text = str(body.get("msg") or body.get("error") or body.get("detail") or "")
    if not text:
        text = response.reason_phrase or "no message"
    return scrub(text[:300])
