"""Vast.ai lifecycle on top of the REST client (`gpuctl.providers.vastai`): GPU tiers, offer
choice, budgets, launch, destroy and the cron cleanup that guarantees nothing gpuctl created
keeps billing.

Modules: `tiers` (the fallback list), `offers` (which offer to rent), `budget` (pure Decimal
money), `instances` (labels, locks, destroy-and-mark), `lifecycle` (launch), `destroy`,
`cleanup`, `orchestrator` (the seed's `GPUOrchestrator`). Nothing here prints or exits: the
commands in `gpuctl/cli/` render what these return.
"""
