"""Private Numba kernels: dumb loops over plain contiguous arrays, no validation.

The public modules (:mod:`fastrnn.rnn_layers`) validate, coerce and allocate, then call these.
"""
