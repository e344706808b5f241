"""The backend manager: priority, cold gate, breaker, fallback, typed reasons, usage ledger."""
