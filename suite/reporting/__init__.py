"""What every report shares: Markdown tables, figures, atomic file writes and
the provenance (versions, git commit, machine) stored beside results.

One implementation of each job, used by the studies' report, the throughput
report, the lecture report and the stores that write results:

- :mod:`.files`: atomic writes (temporary file, fsync, rename) whose files get
  the mode a plain ``open()`` would give (0666 less the umask);
- :mod:`.markdown`: Markdown tables and the number formats reports share;
- :mod:`.figures`: matplotlib figures as objects (no pyplot state), a theme
  applied locally (never a global seaborn theme), and saving;
- :mod:`.provenance`: package versions, the git commit, the machine.

Nothing here trains or reads a study: reports import this, never training.
"""
