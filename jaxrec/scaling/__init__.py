"""Scaling studies: scaling-law forms and fits (`laws`, `fit`) and the sweep report (`report`, `plots`)."""
