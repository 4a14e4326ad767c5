"""AdEMAMix (Pagliardini, Ablin and Grangier 2024, "The AdEMAMix Optimizer:
Better, Faster, Older"): Adam plus a second, much slower average of the
gradient.

.. math::
    m_1 := \\gamma m_1 + (1-\\gamma) L' \\qquad v := \\alpha v + (1-\\alpha) L'^2 \\qquad
    m_2 := \\beta_3 m_2 + (1-\\beta_3) L' \\\\
    w := w - \\eta\\, \\frac{m_1 / (1-\\gamma^t) + a\\, m_2}{\\sqrt{v} / \\sqrt{1-\\alpha^t} + \\epsilon}

with a and beta_3 warmed up over T steps when T > 0 (a linearly, beta_3 on
the paper's log scale), on the host. Symbols -> arguments: eta -> ``lr``,
gamma -> ``gamma`` (beta1), alpha -> ``alpha`` (beta2), beta_3 ->
``beta3``, a -> ``mix`` (the paper's alpha), T -> ``T`` (0: no warm-up),
epsilon -> ``eps``. As pytorch_optimizer's AdEMAMix.
"""

import math

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    b1, b3, mix = hp["gamma"], hp["beta3"], hp["mix"]
    if hp["T"] > 0:
        mix = min(t * mix / hp["T"], mix)
        lb1, lb3 = math.log(b1), math.log(b3)
        b3 = min(math.exp(lb1 * lb3 / ((1.0 - t / hp["T"]) * lb3 + (t / hp["T"]) * lb1)), b3)
    return {"lr": hp["lr"], "gamma": b1, "one_minus_gamma": 1.0 - b1, "alpha": hp["alpha"],
            "one_minus_alpha": 1.0 - hp["alpha"], "b3": b3, "one_minus_b3": 1.0 - b3, "mix": mix,
            "inv_c1": 1.0 / (1.0 - b1 ** t), "inv_sq_c2": 1.0 / math.sqrt(1.0 - hp["alpha"] ** t), "eps": hp["eps"]}


def decay_args(hp):
    """pytorch_optimizer's weight_decay and weight_decouple for our l2 or wd (None for both at once)."""
    if hp["l2"] and hp["wd"]:
        return None
    return {"weight_decay": hp["wd"] or hp["l2"], "weight_decouple": bool(hp["wd"])}


def _peer(hp):
    decay = decay_args(hp)
    if decay is None or hp["T"] and hp["T"] != int(hp["T"]):
        return None
    return "AdEMAMix", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"], hp["beta3"]), "alpha": hp["mix"],
                        "t_alpha_beta3": hp["T"] or None, "eps": hp["eps"], "foreach": False, **decay}


RULE = Rule(
    name="ademamix",
    title="AdEMAMix",
    formula="m1 := gamma m1 + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  m2 := beta3 m2 + (1 - beta3) L';  "
            "w := w - eta (m1 / (1 - gamma^t) + mix m2) / (sqrt(v) / sqrt(1 - alpha^t) + eps)",
    year=2024,
    lr_centre=0.001,
    peer=Peer("pytorch_optimizer", _peer, state={"m1": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0),
                                                 "m2": ("exp_avg_slow", 1.0)}),
    peer_note="exactly pytorch_optimizer.AdEMAMix(lr=lr, betas=(gamma, alpha, beta3), alpha=mix, "
              "t_alpha_beta3=T, eps=eps), weight_decay=l2 (coupled) or wd (weight_decouple=True)",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "beta3": 0.9999, "mix": 5.0, "T": 0.0, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "(0, 1)", "alpha": "[0, 1)", "beta3": "(0, 1)", "mix": "[0, inf)",
            "T": "[0, inf)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "beta_3": "beta3", "a": "mix", "epsilon": "eps"},
    state=("m1", "v", "m2"),
    scalars=scalars,
    update="""
        m1 = gamma * m1 + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        m2 = b3 * m2 + one_minus_b3 * g
        w = w - lr * (m1 * inv_c1 + mix * m2) / (sqrt(v) * inv_sq_c2 + eps)
    """,
    bytes_per_param=36,  # read w, g, m1, v, m2; write w, m1, v, m2
)
