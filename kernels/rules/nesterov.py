"""Nesterov's accelerated gradient (NAG, Nesterov 1983), lecture form.

The lecture takes the gradient at the look-ahead point:

.. math::
    v := \\gamma v + (1-\\gamma)\\, \\nabla Q(w - \\eta\\gamma v) \\qquad
    w := w - \\eta v

Convention (look-ahead coordinates): the flat parameter buffer holds the
look-ahead point u = w - eta gamma v instead of w, so the training loop
computes the gradient at the parameters it has, as for every other rule, and
no second forward pass is needed. Substituting w = u + eta gamma v into the
literal update gives, exactly,

.. math::
    v' = \\gamma v + (1-\\gamma) g(u), \\qquad
    u' = u - \\eta(\\gamma v' + (1-\\gamma) g)

The true weights are w = u + eta gamma v (``lookahead``): ``Rule.weights``
recovers them for evaluation, and decoupled decay, which shrinks w, becomes
u' = (1 - eta lambda_wd) u - eta lambda_wd eta gamma v - ... in these
coordinates (``kernels.transforms.decoupled_decay``).
``tests/test_rules.py`` runs the literal form on a quadratic and checks that
the two agree step by step.

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma``. Coupled L2 adds its
gradient at the look-ahead point.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="nesterov",
    title="Nesterov (NAG)",
    formula='v := gamma v + (1 - gamma) dQ(w - eta gamma v)/dw;  w := w - eta v',
    lecture=3,
    year=1983,
    lr_centre=0.1,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "SGD", {"lr": hp["lr"] * (1 - hp["gamma"]), "momentum": hp["gamma"], "dampening": 0, "nesterov": True,
                "weight_decay": hp["l2"]}),
        state={"v": ("momentum_buffer", lambda hp: 1 - hp["gamma"])}, params="stored"),
    peer_note='exactly torch.optim.SGD(lr=lr * (1 - gamma), momentum=gamma, dampening=0, nesterov=True), whose parameters are our stored look-ahead point u = w - eta gamma v and whose buffer is v / (1 - gamma)',
    hyper={"lr": 0.01, "gamma": 0.9},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)"},
    symbols={"eta": "lr", "gamma": "gamma"},
    state=("v",),
    scalars=lambda hp, t: {
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "lr_gamma": hp["lr"] * hp["gamma"],
        "lr_one_minus_gamma": hp["lr"] * (1.0 - hp["gamma"]),
    },
    update="""
        v = gamma * v + one_minus_gamma * g
        w = w - lr_gamma * v - lr_one_minus_gamma * g
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
    lookahead="lr_gamma * v",  # w = u + eta gamma v
)
