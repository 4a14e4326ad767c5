"""Plain stochastic gradient descent (lecture section 2).

.. math::  w := w - \\eta L'

Symbols -> arguments: eta -> ``lr``. L2 (``l2``, coupled) and weight decay
(``wd``, decoupled) are added to every rule by :mod:`kernels.transforms`.

PyTorch: exactly torch.optim.SGD(lr=lr); its weight_decay is our coupled l2.
"""

from ..rule import Rule

#: The update in the lecture's symbols (L' is the gradient), as the README and `optbench rules` print it.
FORMULA = "w := w - eta L'"
#: The exact torch.optim equivalent, if any.
TORCH = 'exactly torch.optim.SGD(lr=lr); its weight_decay is our coupled l2'

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
