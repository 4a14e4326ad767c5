"""Momentum (Polyak 1964) in the lecture's exponential-moving-average form.

.. math::
    v := \\gamma v + (1 - \\gamma) L' \\qquad  w := w - \\eta v

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma``. Convention: the lecture's
EMA form, so the step is eta times an average gradient; the "heavy ball" form
v := gamma v + L' (PyTorch's SGD momentum) is this one with eta / (1 - gamma).
With gamma = 0 it is exactly SGD.
"""

from ..rule import Rule

RULE = Rule(
    name="momentum",
    title="Momentum",
    hyper={"lr": 0.01, "gamma": 0.9},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)"},
    symbols={"eta": "lr", "gamma": "gamma"},
    state=("v",),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
    },
    update="""
        v = gamma * v + one_minus_gamma * g
        w = w - lr * v
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
)
