"""Plain stochastic gradient descent (lecture section 2).

.. math::  w := w - \\eta L'

Symbols -> arguments: eta -> ``lr``. L2 (``l2``, coupled) and weight decay
(``wd``, decoupled) are added to every rule by :mod:`kernels.transforms`.
"""

from ..rule import Rule

RULE = Rule(
    name="sgd",
    title="SGD",
    hyper={"lr": 0.01},
    ranges={"lr": "(0, inf)"},
    symbols={"eta": "lr"},
    state=(),
    scalars=lambda hp, t: {"lr": hp["lr"]},
    update="""
        w = w - lr * g
    """,
    bytes_per_param=12,  # read w, g; write w
)
