"""Providers: each maps its own SDK/HTTP API onto the small protocol in `base.py`.

Provider implementations and their private helpers only:
- `openai_compat`: any vLLM OpenAI-compatible server (Modal, Vast.ai, `endpoint`) and the one
  readiness probe `probe_vllm`; `openai_mapping` (the wire format), `openai_errors` (failures);
- `anthropic`: the Anthropic fallback; `anthropic_mapping` (messages both ways),
  `anthropic_errors` (SDK failures).
Only `gpuctl.routing` knows their priority order; nothing here knows about the others.
"""
