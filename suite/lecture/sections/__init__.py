"""The report's sections, one builder per section of the lecture (1-12), in
its order: each reads the stored results (:class:`~suite.lecture.stored.Stored`),
draws its figures (:mod:`suite.lecture.figures`) and returns a
:class:`Section` of :class:`Item` s -- claim, figure, table, and a one-line
verdict with the measured number.

Where the numbers come from: section 8's per-layer gradient norms during
training are the training loop's opt-in ``layer_norms`` (the results'
``layer_grad_norms`` column; set in ``lecture-activations.toml``); section 12's
mnist1d runs are the ``lecture-optimizers`` study (see ``optimizer_results``).
"""

from .common import Item, Section
from .descent import section_batches, section_perceptron, section_sgd, section_shuffling, section_standardize
from .networks import section_activations, section_init
from .optimisers import section_optimizers
from .regularisation import section_dropout, section_l2, section_more_weights, section_obd

SECTIONS = (section_perceptron, section_sgd, section_batches, section_shuffling, section_standardize,
            section_more_weights, section_l2, section_activations, section_init, section_dropout,
            section_obd, section_optimizers)

__all__ = ["SECTIONS", "Item", "Section", *(f.__name__ for f in SECTIONS)]
