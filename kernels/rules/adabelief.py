"""AdaBelief (Zhuang et al. 2020): Adam whose second moment tracks the
squared deviation of the gradient from its running mean -- the "belief" in
the gradient -- instead of the squared gradient.

.. math::
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    s := \\alpha s + (1-\\alpha) (L' - \\mu)^2 + \\epsilon \\\\
    w := w - \\eta\\, \\frac{\\mu / (1-\\gamma^t)}{\\sqrt{s / (1-\\alpha^t)} + \\epsilon}

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha ->
``alpha`` (beta2), epsilon -> ``eps``. Convention: the paper's Algorithm 2
and its reference implementation (adabelief-pytorch 0.2): eps is added to s
at every step (so it accumulates) and again outside the root; the deviation
uses the new mu; default eps 1e-16.

PyTorch 2.13 has no AdaBelief; optax has ``optax.adabelief``.
"""

from ..rule import Rule
from .adam import scalars as adam_scalars


RULE = Rule(
    name="adabelief",
    title="AdaBelief",
    formula="mu := gamma mu + (1 - gamma) L';  s := alpha s + (1 - alpha) (L' - mu)^2 + eps;  w := w - eta (mu / (1 - gamma^t)) / (sqrt(s / (1 - alpha^t)) + eps)",
    year=2020,
    lr_centre=0.003,
    peer_note='none: torch.optim has no AdaBelief (optax.adabelief does)',
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-16},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("mu", "s"),
    scalars=adam_scalars,  # Adam's: the same weights and bias corrections
    update="""
        mu = gamma * mu + one_minus_gamma * g
        r = g - mu
        s = alpha * s + one_minus_alpha * (r * r) + eps
        w = w - lr_c1 * mu / (sqrt(c2 * s) + eps)
    """,
    bytes_per_param=28,  # read w, g, mu, s; write w, mu, s
)
