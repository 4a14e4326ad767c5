"""Training: :class:`~suite.training.config.RunConfig` (one run's settings) and
the run loop (:mod:`.loop`: ``run`` for a single run, ``train_epoch`` shared
with Optimal Brain Damage's retraining)."""
