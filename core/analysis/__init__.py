"""Analysis: the paper's tables and the controls, computed from a run's arrays (no model code).

metrics (counts, Spec, U, KL), probe_engine and probe (MLP probes), controls (nulls, bootstrap, control task),
information (what routes know beyond the token), figures, paper (the paper's numbers), seeds (random streams),
report (the run view, the tables, the writer).
"""
