"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled"):
no learning-rate schedule to choose; the evaluated weights are an average.

.. math::
    v := \\alpha v + (1-\\alpha) L'^2 \\qquad
    n = L' / (\\sqrt{v / (1-\\alpha^t)} + \\epsilon) + \\lambda y \\\\
    y := y + c_t (z - y) + \\eta_t (\\gamma (1 - c_t) - 1)\\, n \\qquad
    z := z - \\eta_t n

The parameters hold y, where the gradient is taken; z (``state``, starting
at the weights: ``init``) is the base sequence; the weights to evaluate are
x = y + (1 - 1/gamma)(z - y) (``lookahead``). c_t = w_t / sum_{s<=t} w_s
with w_s = s^r lr_max(s)^power, lr_max(s) the largest lr so far: the
host computes it from the whole history of the lr (``scalars`` takes the
run: its base lr and schedule), warmed up over ``warmup`` steps. Symbols ->
arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha -> ``alpha``
(beta2), epsilon -> ``eps``, lambda -> ``wd`` (at y, after the
normalisation, as the library does: the rule decays the weights itself),
``warmup``, ``r``, ``power`` (weight_lr_power). As
schedulefree.AdamWScheduleFree.
"""

from ..peer import Peer
from ..rule import Rule

#: The running lr maximum and weight sum per (hyper-parameters, run), as of a step.
_SUMS: dict = {}


def _lr(hp, run, s):
    """The lr of step s: the schedule's, times the rule's own warmup."""
    warm = s / hp["warmup"] if s <= hp["warmup"] else 1.0
    return run.lr_at(s) * warm


def scalars(hp, t, run):
    key = (tuple(sorted((k, v) for k, v in hp.items() if k != "lr")), run)  # step t's lr is the run's
    done, lr_max, weight_sum = _SUMS.get(key, (0, -1.0, 0.0))
    if done >= t:  # asked again for an earlier step: start over
        done, lr_max, weight_sum = 0, -1.0, 0.0
    for s in range(done + 1, t + 1):
        lr_max = max(lr_max, _lr(hp, run, s))
        weight_sum += (s ** hp["r"]) * lr_max ** hp["power"]
    _SUMS[key] = (t, lr_max, weight_sum)
    weight = (t ** hp["r"]) * lr_max ** hp["power"]
    ckp1 = weight / weight_sum if weight_sum else 0.0
    lr = _lr(hp, run, t)
    return {"lr": lr, "ckp1": ckp1, "coef": lr * (hp["gamma"] * (1.0 - ckp1) - 1.0),
            "alpha": hp["alpha"], "one_minus_alpha": 1.0 - hp["alpha"], "c2": 1.0 / (1.0 - hp["alpha"] ** t),
            "eps": hp["eps"], "wd": hp["wd"], "k1": 1.0 - 1.0 / hp["gamma"]}


RULE = Rule(
    name="schedule_free_adamw",
    title="Schedule-Free AdamW",
    formula="v := alpha v + (1 - alpha) L'^2;  n = L' / (sqrt(v / (1 - alpha^t)) + eps) + wd y;  "
            "y := y + c_t (z - y) + eta (gamma (1 - c_t) - 1) n;  z := z - eta n;  evaluated at y + (1 - 1/gamma)(z - y)",
    year=2024,
    lr_centre=0.003,
    decoupled=False,
    peer=Peer("schedulefree", lambda hp: None if hp["l2"] else (
        "AdamWScheduleFree", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"],
                              "weight_decay": hp["wd"], "warmup_steps": int(hp["warmup"]), "r": hp["r"],
                              "weight_lr_power": hp["power"], "foreach": False}),
        state={"v": ("exp_avg_sq", 1.0), "z": ("z", 1.0)}, params="stored", setup="train"),
    peer_note="exactly schedulefree.AdamWScheduleFree(lr=lr, betas=(gamma, alpha), eps=eps, weight_decay=wd, "
              "warmup_steps=warmup, r=r, weight_lr_power=power), in train mode",
    hyper={"lr": 0.0025, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8, "wd": 0.0, "warmup": 0.0, "r": 0.0,
           "power": 2.0},
    ranges={"lr": "(0, inf)", "gamma": "(0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)", "wd": "[0, inf)",
            "warmup": "[0, inf)", "r": "[0, inf)", "power": "[0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps", "lambda": "wd"},
    state=("v", "z"),
    init={"z": "w"},
    lookahead="k1 * (z - w)",
    scalars=scalars,
    update="""
        v = alpha * v + one_minus_alpha * (g * g)
        n = g / (sqrt(v * c2) + eps) + wd * w
        w = w + ckp1 * (z - w) + coef * n
        z = z - lr * n
    """,
    bytes_per_param=28,  # read w, g, v, z; write w, v, z
)
