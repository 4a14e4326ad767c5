"""Momentum (Polyak 1964) in the lecture's exponential-moving-average form.

.. math::
    v := \\gamma v + (1 - \\gamma) L' \\qquad  w := w - \\eta v

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma``. Convention: the lecture's
EMA form, so the step is eta times an average gradient (not the "heavy ball"
sum v := gamma v + L' of PyTorch's SGD, whose steps are 1 / (1 - gamma)
larger at the same lr). With gamma = 0 it is exactly SGD.

PyTorch: exactly torch.optim.SGD(lr=lr * (1 - gamma), momentum=gamma,
dampening=0): torch's buffer b = g on the first step and b := gamma b + g
after, and our v = (1 - gamma) b.
"""

from ..rule import Rule

#: The update in the lecture's symbols (L' is the gradient), as the README and `optbench rules` print it.
FORMULA = "v := gamma v + (1 - gamma) L';  w := w - eta v"
#: The exact torch.optim equivalent, if any.
TORCH = "exactly torch.optim.SGD(lr=lr * (1 - gamma), momentum=gamma, dampening=0): torch's buffer b = g on the first step and b := gamma b + g after, and our v = (1 - gamma) b"

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
