"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
the sign of an interpolation between the momentum and the gradient.

.. math::
    c = \\gamma \\mu + (1-\\gamma) L' \\qquad
    w := w - \\eta\\, \\mathrm{sign}(c) \\qquad
    \\mu := \\alpha \\mu + (1-\\alpha) L'

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (the paper's beta1),
alpha -> ``alpha`` (beta2). Every coordinate moves by exactly eta (or 0), so
Lion wants a learning rate 3-10x smaller than AdamW's (default 1e-4) and a
decoupled ``wd`` 3-10x larger; the paper's w := w - eta (sign(c) + lambda w)
is this rule with ``wd`` = lambda (:func:`kernels.transforms.decoupled_decay`).
sign(0) = 0, as np.sign.

PyTorch 2.13 has no Lion; optax has ``optax.lion(learning_rate, b1, b2)``.
"""

from ..rule import Rule


RULE = Rule(
    name="lion",
    title="Lion",
    formula="c = gamma mu + (1 - gamma) L';  w := w - eta sign(c);  mu := alpha mu + (1 - alpha) L'",
    year=2023,
    lr_centre=0.0003,
    peer_note='none: torch.optim has no Lion (optax.lion does)',
    hyper={"lr": 1e-4, "gamma": 0.9, "alpha": 0.99},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha"},
    state=("mu",),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "alpha": hp["alpha"],
        "one_minus_alpha": 1.0 - hp["alpha"],
    },
    update="""
        c = gamma * mu + one_minus_gamma * g
        w = w - lr * sign(c)
        mu = alpha * mu + one_minus_alpha * g
    """,
    bytes_per_param=20,  # read w, g, mu; write w, mu
)
