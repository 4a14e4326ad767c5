"""Plain stochastic gradient descent (lecture section 2).

.. math::  w := w(1 - \\eta\\lambda_{wd}) - \\eta (L' + \\lambda_{2} w)

Symbols -> arguments: eta -> ``lr``; lambda (coupled L2, added to the
gradient as the gradient of lambda/2 ||w||^2) -> ``l2``; lambda (decoupled
decay, the lecture's dropout slide w := w(1 - eta lambda) - ...) -> ``wd``.
The lecture's Q~ = Q + lambda sum w^2 has gradient L' + 2 lambda w, so its
lambda is ``l2 / 2`` here.
"""

from ..rule import Rule, decay

RULE = Rule(
    name="sgd",
    title="SGD",
    hyper={"lr": 0.01},
    symbols={"eta": "lr", "lambda (coupled)": "l2", "lambda (decoupled)": "wd"},
    state=(),
    scalars=lambda hp, t: {"lr": hp["lr"], "l2": hp["l2"], "decay": decay(hp)},
    update="""
        g = g + l2 * w
        w = decay * w - lr * g
    """,
    bytes_per_param=12,  # read w, g; write w
)
