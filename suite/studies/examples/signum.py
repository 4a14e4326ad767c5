"""Signum (Bernstein et al. 2018): the sign of the momentum, a plug-in rule.

    mu := gamma mu + (1 - gamma) L';  w := w - eta sign(mu)

Load it with `optbench validate --rules signum.py`, or `rules = ["signum.py"]` in a study.
"""

import numpy as np

from optbench.kernels import Rule

def reference(w, g, state, hp, t):
    """The float64 oracle optbench validate compares the kernels with."""
    mu = hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * g
    return w - hp["lr"] * np.sign(mu), {"mu": mu}


RULE = Rule(
    name="signum", title="Signum", hyper={"lr": 1e-3, "gamma": 0.9},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)"}, symbols={"eta": "lr", "gamma": "gamma"},
    formula="mu := gamma mu + (1 - gamma) L';  w := w - eta sign(mu)",
    state=("mu",), bytes_per_param=20, reference=reference,
    scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"]},
    update="""
        mu = gamma * mu + one_minus_gamma * g
        w = w - lr * sign(mu)
    """,
)
