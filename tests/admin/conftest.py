from tests.observed import make_observed, observe_standin

__all__ = ["make_observed", "observe_standin"]
