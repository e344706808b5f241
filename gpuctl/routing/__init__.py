"""The backend manager: priority, cold gate, breaker, fallback, typed reasons, usage ledger.

Dependencies point down this list: `manager` (BackendManager: wiring and the public API) →
`status` (the status report) and `stream` (RoutedStream, complete) → `policy` (Router: order,
gates, candidates, bookkeeping) → `ledger` (usage rows and their price) → `outcomes` (typed
reasons and attempts) → `registry` (slots and every provider-specific fact) and `breaker`
(pure rules). Only `registry` names providers.
"""
