"""Authorization: the policy language, the per-route rules written in it, and
the image-owner look-up a rule may need."""
