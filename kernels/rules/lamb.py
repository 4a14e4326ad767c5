"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"):
Adam's direction, rescaled per tensor by a trust ratio.

.. math::
    m := \\gamma m + (1-\\gamma) L' \\qquad v := \\alpha v + (1-\\alpha) L'^2 \\qquad
    r = m / (\\sqrt{v} + \\epsilon) \\\\
    w := w - \\frac{\\eta}{1-\\gamma^t}\\,
         \\frac{\\phi(\\lVert w \\rVert)}{\\lVert r \\rVert + \\epsilon}\\, r,
    \\qquad \\phi(x) = \\min(x, 10)

per tensor (each weight matrix and bias is a view: ``norm`` reduces over
it), the ratio 1 where either norm is 0. This is pytorch_optimizer's Lamb
(no bias correction in v, phi clamped at 10, decoupled decay applied before
the norms), which the conformance tests run beside it. Symbols -> arguments:
eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha -> ``alpha`` (beta2),
epsilon -> ``eps``.

On the GPU: one pass over the elements writes r, the views reduce ||w||
and ||r|| per member and tensor, and one pass writes w, m and v.
"""

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    return {
        "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"],
        "alpha": hp["alpha"], "one_minus_alpha": 1.0 - hp["alpha"],
        "lr_c1": hp["lr"] / (1.0 - hp["gamma"] ** t), "eps": hp["eps"],
    }


RULE = Rule(
    name="lamb",
    title="LAMB",
    formula="m := gamma m + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  r = m / (sqrt(v) + eps);  "
            "w := w - eta / (1 - gamma^t) min(||w||, 10) / (||r|| + eps) r  (norms per tensor)",
    year=2019,
    lr_centre=0.01,
    peer=Peer("pytorch_optimizer", lambda hp: None if hp["l2"] else (
        "Lamb", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"],
                 "weight_decay": hp["wd"], "weight_decouple": True, "foreach": False}),
        state={"m": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)}),
    peer_note="exactly pytorch_optimizer.Lamb(lr=lr, betas=(gamma, alpha), eps=eps, weight_decay=wd)",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-6},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("m", "v"),
    scalars=scalars,
    update="""
        m = gamma * m + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        r = m / (sqrt(v) + eps)
        wn = min(norm(w), 10)
        rn = norm(r)
        trust = where(wn > 0, where(rn > 0, wn / (rn + eps), 1), 1)
        w = w - lr_c1 * trust * r
    """,
    # pass 1 reads w, g, m, v and writes r; the norms read w and r; pass 2
    # reads w, g, m, v and the expanded ratio and writes w, m, v
    bytes_per_param=76,
)
