"""fastrnn: a fast, drop-in replacement for the classic NumPy RNN/LSTM captioning layers.

``from fastrnn.rnn_layers import *`` instead of ``from cs231n.rnn_layers import *``.  Importing
this package imports no kernel and compiles nothing: kernels compile on first use, per dtype,
and are cached on disk.
"""
__version__ = "0.1.0"
