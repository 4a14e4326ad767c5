"""Where the named workloads' targets come from: the committed reference run."""

REFERENCE = ("results/default, the default protocol's committed run (2026-12-02, numba backend, 2-core "
             "reference CPU; tuning seeds 0-2, confirmation seeds 100-109)")
