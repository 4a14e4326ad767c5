"""Data: the data sets, their splits and standardisation, and mini-batch order
(lecture sections 3-5).

- :mod:`.datasets`: digits, mnist1d, spirals, blobs, regression; ``load``;
- :mod:`.splits`: train / validation / test splits, z-scores from the
  training split, condition numbers;
- :mod:`.batches`: the order an epoch visits the objects, and its batches.
"""
