"""Studies: a TOML file of settings expanded into cells, run and reported.

- :mod:`.spec`: the study file and its cells (``load_study``); the built-in
  studies are in ``builtin/*.toml``;
- :mod:`.runner`: runs the cells not yet done, in-process or on Dask;
- :mod:`.store`: the results folder (one atomic CSV per cell, metadata.json)
  and the column schema;
- :mod:`.scoring`, :mod:`.figures`, :mod:`.report`: the report, from stored
  results alone (they import nothing from training).
"""
