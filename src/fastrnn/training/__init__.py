"""Training: the machinery the solvers share and their checkpoint files.

* :mod:`fastrnn.training.core`: :class:`~fastrnn.training.core.BaseSolver` (options, checked
  updates, the training loop, Ctrl-C between iterations, checkpoint save and resume).
* :mod:`fastrnn.training.checkpoint`: the HDF5 checkpoint format (digest, atomic writes, full
  validation on reading).

The solvers themselves live at the classic import paths: :mod:`fastrnn.solver` (the general
``Solver``: ``X_train``/``y_train``/``X_val``/``y_val``, accuracy and Matthews correlation) and
:mod:`fastrnn.captioning_solver` (``CaptioningSolver``); the update rules in :mod:`fastrnn.optim`.
"""
