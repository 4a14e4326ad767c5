"""``optbench bench``: throughput of the kernels and of training, against a
copy and PyTorch, and its report.

- :mod:`.command`: the command (``BenchOptions``), sections, saving;
- :mod:`.timing`: timers, interleaved samples, the machine's timing policy;
- :mod:`.cases`: the copy, rule, dropout and model-shaped cases and rows;
- :mod:`.training`: training examples per second;
- :mod:`.scoring`, :mod:`.figures`, :mod:`.report`: the report, from the
  stored table alone.
"""
