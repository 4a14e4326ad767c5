"""ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any
beta2 with the Optimal Rate"): Adam with the second moment taken one step
late, so that it is independent of the gradient it divides.

.. math::
    t = 1:\\ v := L'^2 \\text{ (no step)} \\qquad
    t > 1:\\ n = \\mathrm{clip}(L' / \\max(\\sqrt v, \\epsilon), \\pm t^{1/4}) \\\\
    m := \\gamma m + (1-\\gamma) n \\qquad w := w - \\eta m \\qquad v := \\alpha v + (1-\\alpha) L'^2

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha ->
``alpha`` (beta2), epsilon -> ``eps``. The first step and the clip t^(1/4)
are host scalars. As pytorch_optimizer's ADOPT.
"""

from ..peer import Peer
from ..rule import Rule
from .ademamix import decay_args


def _peer(hp):
    decay = decay_args(hp)
    return None if decay is None else ("ADOPT", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]),
                                                 "eps": hp["eps"], "foreach": False, **decay})


RULE = Rule(
    name="adopt",
    title="ADOPT",
    formula="t = 1: v := L'^2;  t > 1: m := gamma m + (1 - gamma) clip(L' / max(sqrt(v), eps), t^(1/4));  "
            "w := w - eta m;  v := alpha v + (1 - alpha) L'^2",
    year=2024,
    lr_centre=0.001,
    peer=Peer("pytorch_optimizer", _peer, state={"m": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)}),
    peer_note="exactly pytorch_optimizer.ADOPT(lr=lr, betas=(gamma, alpha), eps=eps), "
              "weight_decay=l2 (coupled) or wd (weight_decouple=True)",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.9999, "eps": 1e-6},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("m", "v"),
    scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"],
                           "alpha": hp["alpha"], "one_minus_alpha": 1.0 - hp["alpha"], "eps": hp["eps"],
                           "first": 1.0 if t == 1 else 0.0, "clip": t ** 0.25},
    update="""
        n = min(max(g / max(sqrt(v), eps), -clip), clip)
        m = where(first > 0, m, gamma * m + one_minus_gamma * n)
        w = where(first > 0, w, w - lr * m)
        v = where(first > 0, g * g, alpha * v + one_minus_alpha * (g * g))
    """,
    bytes_per_param=28,  # read w, g, m, v; write w, m, v
)
