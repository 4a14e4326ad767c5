"""How the lecture report grades a claim: one of these statuses per claim."""

AGREES = "agrees"                 # our data say what the lecture says
CONTRADICTS = "CONTRADICTS"       # our data say otherwise
MIXED = "mixed"                   # part agrees, part does not
NOT_REPRODUCED = "not reproduced" # the effect did not show here
INFO = "no claim tested"          # context, or a measurement beyond the lecture

STATUSES = (AGREES, CONTRADICTS, MIXED, NOT_REPRODUCED, INFO)
