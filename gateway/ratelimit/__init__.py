"""Rate limiting in three layers, as envoyproxy/ratelimit has them.

rules (config -> which limits a request counts against) -> limiter
(decision, failure mode, circuit breaker) -> store (the sliding-window log,
where the state is).
"""
