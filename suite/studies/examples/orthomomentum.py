"""Orthogonalised momentum, a plug-in with a matrix step: Muon's core.

    b := gamma b + (1 - gamma) L'
    w := w - eta sqrt(max(1, cols / rows)) orth(b)     (each weight matrix)
    w := w - eta b                                     (biases and other vectors)

``orth(x)`` replaces each view the rule treats as a matrix by its
Newton-Schulz orthogonalisation (five quintic steps in float32: every
matrix of one shape, for every member of a population, in one batch of
products) and leaves the other views as they are; ``matrix`` is 1 on the
matrices and 0 elsewhere, ``rows`` and ``cols`` are the view's shape (a
weight is fan_in x fan_out). ``matrices="all"`` treats every weight matrix
so; Muon's recipe, ``"hidden"``, leaves the first and last layers out.
There is no reference: validate compares the kernels with this text run in
float64, which checks the backends, not the maths.

    optbench validate --rules suite/studies/examples/orthomomentum.py --only orthomomentum
"""

from optbench.kernels import Rule

RULE = Rule(
    name="orthomomentum", title="Orthogonalised momentum",
    hyper={"lr": 0.02, "gamma": 0.9}, ranges={"lr": "(0, inf)", "gamma": "[0, 1)"},
    symbols={"eta": "lr", "gamma": "gamma"},
    formula="b := gamma b + (1 - gamma) L';  w := w - eta sqrt(max(1, cols/rows)) NS5(b) (matrices), w - eta b (vectors)",
    state=("b",), matrices="all", bytes_per_param=40,
    scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"]},
    update="""
        b = gamma * b + one_minus_gamma * g
        o = orth(b)
        w = where(matrix > 0, w - lr * sqrt(max(1, cols / rows)) * o, w - lr * b)
    """,
)
