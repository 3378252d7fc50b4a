"""The daemon's HTTP side: the rollout-confirmation hook (with its authentication), health,
readiness and metrics routes, and the server that runs them."""
