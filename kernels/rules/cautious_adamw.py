"""Cautious AdamW (Liang et al. 2024, "Cautious Optimizers: Improving
Training with One Line of Code"): AdamW that skips the coordinates where
its step disagrees with the gradient.

.. math::
    m := \\gamma m + (1-\\gamma) L' \\qquad v := \\alpha v + (1-\\alpha) L'^2 \\qquad
    \\phi = [m L' > 0] \\\\
    w := w - \\eta\\, \\phi \\frac{n}{\\sum \\phi + 1}\\,
         \\frac{m / (1-\\gamma^t)}{\\sqrt{v} / \\sqrt{1-\\alpha^t} + \\epsilon}

with the mask's rescaling n / (sum phi + 1) per tensor (n its size: a
``sum`` over the view). Symbols -> arguments: eta -> ``lr``, gamma ->
``gamma`` (beta1), alpha -> ``alpha`` (beta2), epsilon -> ``eps``; with
decoupled ``wd`` it is the paper's C-AdamW. As pytorch_optimizer's cautious
update (apply_cautious), which has no AdamW of its own: its AdEMAMix with
the slow average weighted 0 is AdamW, and the conformance tests run that.
"""

import math

from ..peer import Peer
from ..rule import Rule
from .ademamix import decay_args


def _peer(hp):
    decay = decay_args(hp)
    return None if decay is None else (
        "AdEMAMix", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"], 0.9999), "alpha": 0.0, "eps": hp["eps"],
                     "cautious": True, "foreach": False, **decay})


RULE = Rule(
    name="cautious_adamw",
    title="Cautious AdamW",
    formula="m := gamma m + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  phi = [m L' > 0];  "
            "w := w - eta phi n / (sum(phi) + 1) (m / (1 - gamma^t)) / (sqrt(v) / sqrt(1 - alpha^t) + eps)  (per tensor)",
    year=2024,
    lr_centre=0.003,
    peer=Peer("pytorch_optimizer", _peer, state={"m": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)}),
    peer_note="exactly pytorch_optimizer.AdEMAMix(lr=lr, betas=(gamma, alpha, any), alpha=0, eps=eps, "
              "cautious=True): its cautious AdamW",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("m", "v"),
    scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"],
                           "alpha": hp["alpha"], "one_minus_alpha": 1.0 - hp["alpha"],
                           "inv_c1": 1.0 / (1.0 - hp["gamma"] ** t),
                           "inv_sq_c2": 1.0 / math.sqrt(1.0 - hp["alpha"] ** t), "eps": hp["eps"]},
    update="""
        m = gamma * m + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        keep = where(m * g > 0, 1, 0)
        w = w - lr * keep * (size / (sum(keep) + 1)) * (m * inv_c1) / (sqrt(v) * inv_sq_c2 + eps)
    """,
    # pass 1 reads g, m writes the mask; the sum reads it; pass 2 reads w, g, m, v and the scale, writes w, m, v
    bytes_per_param=48,
)
