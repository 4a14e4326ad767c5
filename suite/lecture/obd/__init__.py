"""Optimal Brain Damage (lecture section 11): the pruning itself
(:mod:`.pruning`), the experiments on digits that test the lecture's claims
(:mod:`.experiments`), their figures (:mod:`.figures`) and report sections
with typed verdicts (:mod:`.sections`)."""
