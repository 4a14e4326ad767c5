"""AMSGrad (Reddi, Kale and Kumar 2018): Adam whose denominator never
shrinks -- it uses the running maximum of the second moment.

.. math::
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    v := \\alpha v + (1-\\alpha) L' \\odot L' \\qquad
    \\hat v := \\max(\\hat v, v) \\\\
    w := w - \\eta\\, \\frac{\\mu / (1-\\gamma^t)}{\\sqrt{\\hat v / (1-\\alpha^t)} + \\epsilon}

Symbols -> arguments: as Adam (eta -> ``lr``, gamma -> ``gamma``, alpha ->
``alpha``, epsilon -> ``eps``); v-hat is the state ``vmax``. Convention: the
bias corrections as in PyTorch (the paper has none); both are per-step
scalars computed on the host.

PyTorch: exactly ``torch.optim.Adam(lr=lr, betas=(gamma, alpha), eps=eps,
amsgrad=True)``; with decoupled ``wd``, ``torch.optim.AdamW(...,
weight_decay=wd, amsgrad=True)``.
"""

from ..rule import Rule
from .adam import scalars as adam_scalars

#: The update in the lecture's symbols (L' is the gradient), as the README and `optbench rules` print it.
FORMULA = "mu := gamma mu + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  vmax := max(vmax, v);  w := w - eta (mu / (1 - gamma^t)) / (sqrt(vmax / (1 - alpha^t)) + eps)"
#: The exact torch.optim equivalent, if any.
TORCH = 'exactly torch.optim.Adam(lr=lr, betas=(gamma, alpha), eps=eps, amsgrad=True)'

RULE = Rule(
    name="amsgrad",
    title="AMSGrad",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("mu", "v", "vmax"),
    scalars=adam_scalars,  # Adam's: the same weights and bias corrections
    update="""
        mu = gamma * mu + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        vmax = max(vmax, v)
        w = w - lr_c1 * mu / (sqrt(c2 * vmax) + eps)
    """,
    bytes_per_param=36,  # read w, g, mu, v, vmax; write w, mu, v, vmax
)
