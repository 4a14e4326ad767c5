"""The model: activations, losses, initialisations, the MLP on a flat
parameter buffer (hand-written back-propagation) and its checkpoints."""
