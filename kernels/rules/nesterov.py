"""Nesterov's accelerated gradient (NAG, Nesterov 1983), lecture form.

The lecture takes the gradient at the look-ahead point:

.. math::
    v := \\gamma v + (1-\\gamma)\\, \\nabla Q(w - \\eta\\gamma v) \\qquad
    w := w(1 - \\eta\\lambda_{wd}) - \\eta v

Convention (look-ahead coordinates): the flat parameter buffer holds the
look-ahead point u = w - eta gamma v instead of w, so the training loop
computes the gradient at the parameters it has, as for every other rule, and
no second forward pass is needed. Substituting w = u + eta gamma v into the
literal update gives, exactly,

.. math::
    v' = \\gamma v + (1-\\gamma) g(u), \\qquad
    u' = (1-\\eta\\lambda_{wd})\\,u - \\eta(\\gamma v' + (1-\\gamma) g)
         - \\eta\\lambda_{wd}\\,\\eta\\gamma\\, v

(the last term vanishes without decoupled decay). The true weights are
w = u + eta gamma v: :attr:`RULE.weights` recovers them for evaluation.
``tests/test_rules.py`` runs the literal form on a quadratic and checks that
the two agree step by step.

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma``, lambda -> ``l2``
(coupled, the gradient of Q~ at the look-ahead point) or ``wd`` (decoupled).
"""

from ..rule import Rule, decay


def _weights(params, state, hp):
    """w = u + eta gamma v: the weights behind the stored look-ahead point."""
    return params + (hp["lr"] * hp["gamma"]) * state["v"]


RULE = Rule(
    name="nesterov",
    title="Nesterov (NAG)",
    hyper={"lr": 0.01, "gamma": 0.9},
    symbols={"eta": "lr", "gamma": "gamma", "lambda (coupled)": "l2", "lambda (decoupled)": "wd"},
    state=("v",),
    scalars=lambda hp, t: {
        "l2": hp["l2"],
        "decay": decay(hp),
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "lr_gamma": hp["lr"] * hp["gamma"],
        "lr_one_minus_gamma": hp["lr"] * (1.0 - hp["gamma"]),
        "decay_lookahead": hp["lr"] * hp["wd"] * hp["lr"] * hp["gamma"],
    },
    update="""
        g = g + l2 * w
        w = decay * w - decay_lookahead * v
        v = gamma * v + one_minus_gamma * g
        w = w - lr_gamma * v - lr_one_minus_gamma * g
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
    weights=_weights,
)
