"""LARS (You, Gitman and Ginsburg 2017, "Large Batch Training of
Convolutional Networks"): a local learning rate per weight matrix.

.. math::
    \\lambda = \\eta_{tc} \\frac{\\lVert w \\rVert}{\\lVert L' \\rVert + \\beta \\lVert w \\rVert}
    \\qquad d = \\lambda (L' + \\beta w) \\text{ (weight matrices; biases: } d = L') \\\\
    b := \\gamma b + d \\qquad w := w - \\eta b

per weight matrix (lambda = 1 where ||w|| or the denominator is 0).
Symbols -> arguments: eta -> ``lr``, eta_tc -> ``eta`` (the trust
coefficient), beta -> ``beta`` (LARS's weight decay, inside the ratio),
gamma -> ``gamma`` (momentum). As pytorch_optimizer's LARS (dampening 0, no
Nesterov), which the conformance tests run beside it. With eta = 1e-3 a
layer moves lr x 1e-3 of its norm per step: LARS wants an lr near 1.
"""

from ..peer import Peer
from ..rule import Rule

RULE = Rule(
    name="lars",
    title="LARS",
    formula="lambda = eta_tc ||w|| / (||L'|| + beta ||w||) (per weight matrix);  "
            "d = lambda (L' + beta w) (matrices), L' (biases);  b := gamma b + d;  w := w - eta b",
    year=2017,
    lr_centre=1.0,
    peer=Peer("pytorch_optimizer", lambda hp: None if hp["l2"] or hp["wd"] else (
        "LARS", {"lr": hp["lr"], "weight_decay": hp["beta"], "momentum": hp["gamma"], "dampening": 0.0,
                 "trust_coefficient": hp["eta"], "nesterov": False, "foreach": False}),
        state={"buf": ("momentum_buffer", 1.0)}),
    peer_note="exactly pytorch_optimizer.LARS(lr=lr, weight_decay=beta, momentum=gamma, trust_coefficient=eta)",
    hyper={"lr": 1.0, "gamma": 0.9, "eta": 1e-3, "beta": 0.0},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "eta": "(0, inf)", "beta": "[0, inf)"},
    symbols={"eta": "lr", "eta_tc": "eta", "beta": "beta", "gamma": "gamma"},
    state=("buf",),
    scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "eta": hp["eta"], "beta": hp["beta"]},
    update="""
        wn = norm(w)
        gn = norm(g)
        den = gn + beta * wn
        trust = where(wn > 0, where(den > 0, eta * wn / den, 1), 1)
        d = where(matrix > 0, (g + beta * w) * trust, g)
        buf = gamma * buf + d
        w = w - lr * buf
    """,
    # the norms read w and g; one pass reads w, g, buf and the expanded ratio, writes w, buf
    bytes_per_param=32,
)
