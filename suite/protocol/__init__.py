"""The benchmark protocol: named workloads, tuning that brackets the optimum,
select-then-confirm on fresh seeds, and statistics with their uncertainty.

workloads (the test problems), spec (the protocol file), tuning (grids and
bracketing), runner (tune, bracket, confirm), stats (bootstrap, censoring,
profiles, budgets), scoring (the report's tables), figures, report.
"""
