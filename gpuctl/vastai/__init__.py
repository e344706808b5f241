"""Vast.ai, gpuctl's legacy provider: its REST client, and the instance lifecycle on top of it
(GPU tiers, offer choice, budgets, launch, destroy, and the cron cleanup that guarantees nothing
gpuctl created keeps billing).

Modules: `client` (REST calls) and `api_types` (the records they return, the search query);
`tiers` (the fallback list), `offers` (which offer to rent), `budget` (pure Decimal money and
the budget verdict), `instances` (labels, locks, destroy-and-mark); `container` (what a create
sends, and where the vLLM key lives); `plan` (what a launch would rent), `attempt` (one offer:
create, watch, settle), `watch` (until vLLM answers), `launch` (the walk over offers and tiers);
`destroy`, `cleanup` (and `cleanup_report`, what a run reports), `unconfirmed` (when a create of
unknown outcome may be believed never to have happened); `inventory` (what bills now, for
`gpuctl status`); `compat` (`GPUOrchestrator`, the name Python users already import).
Nothing here prints or exits: `gpuctl/ops/` calls it, `gpuctl/cli/` renders.
"""
