"""Dropout switched by `training` and at run time by a variable: two graphs, one real `If` op."""
