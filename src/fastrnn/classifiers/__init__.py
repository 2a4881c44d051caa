"""Models built from the fastrnn layers (``fastrnn.classifiers.rnn.CaptioningRNN``)."""
