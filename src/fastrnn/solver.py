"""The classic general ``Solver`` (``from cs231n.solver import Solver``), on fastrnn's shared core.

Trains a classifier on ``data = {"X_train", "y_train", "X_val", "y_val"}`` with the classic
keyword arguments and behaviour: minibatches drawn with replacement, training and validation
accuracy after the first iteration and at every epoch end (``train_acc_history``,
``val_acc_history``), the parameters of the best validation accuracy kept in ``best_params``
and put back into the model when training ends.  It adds the Matthews correlation of the
validation predictions (``val_mcc_history``; CoLA's official metric) and everything of
:class:`fastrnn.training.core.BaseSolver`: progress bar, gradient clipping, non-finite checks,
Ctrl-C between iterations, checkpoints with resume.
"""
import numpy as np

from fastrnn._limits import check_count
from fastrnn.metrics import matthews_corrcoef
from fastrnn.training.core import BaseSolver

__all__ = ["Solver"]

_DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")


class Solver(BaseSolver):
    """Train a classification model with minibatch gradient descent (the classic ``Solver``).

    Parameters
    ----------
    model : object
        With ``params`` (dict of arrays) and ``loss(X, y=None)``: ``(loss, grads)`` with labels,
        scores (N, C) without.  A model with ``predict(X) -> (N,) labels`` is asked for its
        labels instead; a single column of scores is read as the probability of label 1.
    data : dict
        ``X_train`` (N, ...), ``y_train`` (N,), ``X_val``, ``y_val``: integer labels.

    Other Parameters
    ----------------
    update_rule, optim_config, lr_decay, batch_size, num_epochs, print_every, verbose
        As in the classic solver (see :class:`fastrnn.training.core.BaseSolver`).
    num_train_samples : int, default 1000
        Training rows (drawn at random) on which the training accuracy is measured.
    num_val_samples : int, optional
        Validation rows likewise; default all of them.
    checkpoint_name : str, optional
        Also write ``<checkpoint_name>_epoch_<epoch>.h5`` at every epoch end (the classic
        solver pickled ``.pkl`` files there; these are fastrnn's HDF5 checkpoints).
    grad_clip, checkpoint_dir, resume, rng
        fastrnn's additions, as in :class:`fastrnn.captioning_solver.CaptioningSolver`.

    Attributes
    ----------
    loss_history, train_acc_history, val_acc_history, val_mcc_history : lists
    best_val_acc : float
    best_params : dict of arrays
    """

    kind = "Solver"
    epoch_histories = ("train_acc_history", "val_acc_history", "val_mcc_history")

    def __init__(self, model, data, **kwargs):
        for key in _DATA_KEYS:
            if key not in data:
                raise ValueError(f"data has no {key!r}: expected keys {list(_DATA_KEYS)}")
        self.X_train, self.y_train = _split(data, "train")
        self.X_val, self.y_val = _split(data, "val")
        self.num_train_samples = check_count("num_train_samples",
                                             kwargs.pop("num_train_samples", 1000))
        num_val_samples = kwargs.pop("num_val_samples", None)
        self.num_val_samples = (None if num_val_samples is None
                                else check_count("num_val_samples", num_val_samples))
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        super().__init__(model, data, **kwargs)

    def _num_train(self):
        return self.X_train.shape[0]

    def _choice(self, n, size):
        """Row indices drawn with replacement, from the solver's generator or np.random."""
        return np.random.choice(n, size) if self.rng is None else self.rng.choice(n, size)

    def _minibatch(self):
        rows = self._choice(self._num_train(), self.batch_size)
        return self.X_train[rows], self.y_train[rows]

    def _predictions(self, X, y, num_samples=None, batch_size=100):
        """``(y, y_pred)`` on all rows of X, or on ``num_samples`` drawn at random."""
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            rows = self._choice(N, num_samples)
            X, y, N = X[rows], y[rows], num_samples
        predict = getattr(self.model, "predict", None)
        y_pred = []
        for start in range(0, N, batch_size):
            batch = X[start:start + batch_size]
            if callable(predict):
                y_pred.append(np.asarray(predict(batch)).reshape(-1))
                continue
            scores = np.asarray(self.model.loss(batch))
            if scores.ndim == 2 and scores.shape[1] == 1:
                y_pred.append((scores[:, 0] >= 0.5).astype(np.int64))
            else:
                y_pred.append(np.argmax(scores, axis=1))
        return y, np.hstack(y_pred) if y_pred else np.zeros(0, dtype=np.int64)

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of rows of X whose predicted label equals y (the classic method).

        Parameters
        ----------
        X : (N, ...) inputs; y : (N,) integer labels
        num_samples : int, optional
            Measure on this many rows drawn at random (with replacement) instead of all.
        batch_size : int, default 100
        """
        y, y_pred = self._predictions(X, np.asarray(y).reshape(-1), num_samples, batch_size)
        return float(np.mean(y_pred == y))

    def _record_accuracy(self, bar):
        train_acc = self.check_accuracy(self.X_train, self.y_train,
                                        num_samples=self.num_train_samples)
        y, y_pred = self._predictions(self.X_val, self.y_val, self.num_val_samples)
        val_acc = float(np.mean(y_pred == y))
        val_mcc = matthews_corrcoef(y, y_pred)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        self.val_mcc_history.append(val_mcc)
        if self.verbose:
            bar.write("(Epoch %d / %d) train acc: %f; val_acc: %f; val MCC: %f"
                      % (self.epoch, self.num_epochs, train_acc, val_acc, val_mcc))
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}

    _after_first_iteration = _record_accuracy
    _evaluate = _record_accuracy

    def _write_checkpoints(self):
        super()._write_checkpoints()
        if self.checkpoint_name is not None:
            self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.h5")

    def _finish_training(self):
        """As the classic solver: the model ends with the parameters of the best val accuracy."""
        if self.best_params:
            self.model.params = dict(self.best_params)


def _split(data, split):
    X, y = np.asarray(data[f"X_{split}"]), np.asarray(data[f"y_{split}"])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim < 1 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X_{split} {X.shape} and y_{split} {y.shape} must hold the same number "
                         "of rows, with one label per row")
    if X.shape[0] == 0:
        raise ValueError(f"X_{split} holds no rows")
    return X, y
