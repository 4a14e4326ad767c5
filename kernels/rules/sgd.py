"""Plain stochastic gradient descent (lecture section 2).

.. math::  w := w - \\eta L'

Symbols -> arguments: eta -> ``lr``. L2 (``l2``, coupled) and weight decay
(``wd``, decoupled) are added to every rule by :mod:`kernels.transforms`.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="sgd",
    title="SGD",
    formula="w := w - eta L'",
    lecture=1,
    year=1951,
    lr_centre=0.1,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else ("SGD", {"lr": hp["lr"], "weight_decay": hp["l2"]})),
    peer_note='exactly torch.optim.SGD(lr=lr); its weight_decay is our coupled l2',
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
