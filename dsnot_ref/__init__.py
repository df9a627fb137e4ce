"""dsnot_ref: a pure-NumPy reference implementation of DSnoT (Dynamic Sparse No Training).

Read in this order (imports flow one way, top to bottom):
config, backend, ops, model, stats, methods, weights, cache, data, pipeline, evaluate, cli.
"""

__version__ = "0.1.0"
