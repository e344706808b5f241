"""`gpuctl serve`: the OpenAI-compatible gateway over the fallback chain, and the admin API.

Thin like `cli/`: routes translate HTTP to the same `routing` and `ops` calls the commands use,
and back. Dependencies point down this list: `server` (uvicorn, signals, workers) → `app`
(the ASGI callable, routes, errors → answers, the access log line) → `chat` and `admin` (the
routes) → `gateway` (one worker's manager, monitor, launches, metrics, keys, in-flight bound) →
`monitor`, `launches`, `metrics`, `accesslog`, `options` → `openai_wire` (the wire format ⇄
gpuctl's types) → `asgi` (body, answers, hang-ups) → `errors` (the error tree as HTTP statuses).
Nothing below `serve` imports it; `gpuctl --help` imports none of it.
"""
