"""DSnoT (Zhang et al., ICLR 2024): the mask refiner that steers each row's expected error to zero.

Read in this order: ``per_row.py`` (the method one row at a time, in plain Python: the spec in
code), ``reference.py`` (the same for all rows at once, tested equal; ``orders.py`` its
candidate lists), then the two other variants, each plain form beside its fast one:
``official_per_row.py`` / ``official.py`` (the released code, pointer for pointer) and
``exact_per_row.py`` / ``exact.py`` (a swap kept only if it lowers the true error).
``common.py`` holds the settings and what the loops share. Fast forms import the plain ones,
never the reverse, and no variant imports another; the registry is methods/refiners.py.
"""
