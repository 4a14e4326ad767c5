"""RMSProp (Hinton's lecture 6e), lecture form.

.. math::
    v := \\gamma v + (1-\\gamma) L' \\odot L' \\qquad
    w := w(1 - \\eta\\lambda_{wd}) - \\eta\\, L' / (\\sqrt{v} + \\epsilon)

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (PyTorch calls it
alpha), epsilon -> ``eps``, lambda -> ``l2`` (coupled) or ``wd`` (decoupled).
Convention: eps outside the root, as on the slide and in PyTorch.
"""

from ..rule import Rule, decay

RULE = Rule(
    name="rmsprop",
    title="RMSProp",
    hyper={"lr": 1e-3, "gamma": 0.9, "eps": 1e-8},
    symbols={"eta": "lr", "gamma": "gamma", "epsilon": "eps",
             "lambda (coupled)": "l2", "lambda (decoupled)": "wd"},
    state=("v",),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "eps": hp["eps"],
        "l2": hp["l2"],
        "decay": decay(hp),
    },
    update="""
        g = g + l2 * w
        v = gamma * v + one_minus_gamma * (g * g)
        w = decay * w - lr * g / (sqrt(v) + eps)
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
)
