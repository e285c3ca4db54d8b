"""Authorization: the per-route rules, in the policy language
(gateway/policy_language.py), and the image-owner look-up a rule may need."""
