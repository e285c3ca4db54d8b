"""Rate limiting in three layers, as envoyproxy/ratelimit has them.

rules (config -> which limits a request counts against) -> limiter
(decision, failure mode) -> store (the GCRA algorithm, where the state is).
"""
