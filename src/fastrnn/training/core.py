"""The training machinery the solvers share: options, checked updates, the loop, checkpoints.

:class:`BaseSolver` holds what :class:`fastrnn.captioning_solver.CaptioningSolver` and the
classic general :class:`fastrnn.solver.Solver` have in common; a subclass says how to draw a
minibatch, how many training rows there are and what to measure at an epoch's end.

* Ctrl-C (SIGINT) during :meth:`BaseSolver.train` sets a flag that is read after each
  iteration, so training stops between iterations, never inside a kernel or a checkpoint
  write, and :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) is raised.  A second
  Ctrl-C exits the process at once (status 130) after removing a checkpoint being written.
* A non-finite loss, gradient or updated parameter raises :class:`NonFiniteError` before
  anything is updated or written.
* Checkpoints (:mod:`fastrnn.training.checkpoint`) carry a SHA-256 digest, the model's kind
  and configuration; a resumed checkpoint is validated in full before the model or the solver
  is touched, and the run continues on exactly the trajectory it would have followed.
"""
import contextlib
import json
import math
import numbers
import os
import signal
import sys
import threading
import warnings

import numpy as np

from fastrnn import optim
from fastrnn._limits import check_count
from fastrnn.training.checkpoint import (CHECKPOINT_FILE, TEMPORARIES, check_checkpoint_dir,
                                         json_text, read_checkpoint, write_checkpoint)

__all__ = ["BaseSolver", "clip_grad_norm", "NonFiniteError", "TrainingInterrupted",
           "deferred_sigint"]


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter.

    Attributes: ``iteration`` (1-based, the one that failed), ``name`` (the parameter, or None
    for the loss) and ``learning_rate``.
    """

    def __init__(self, message, iteration, name, learning_rate):
        super().__init__(message)
        self.iteration = iteration
        self.name = name
        self.learning_rate = learning_rate


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a solver's ``train`` between two iterations.

    Attributes: ``iteration`` and ``epoch`` reached (complete), ``num_iterations``,
    ``num_epochs``, and ``checkpoint``: None, or ``(path, epoch, iteration)`` of the last
    complete checkpoint this solver wrote or resumed from.
    """

    def __init__(self, iteration, num_iterations, epoch, num_epochs, checkpoint):
        super().__init__(f"training interrupted after iteration {iteration} of {num_iterations}"
                         f" (epoch {epoch} of {num_epochs} complete)")
        self.iteration = iteration
        self.num_iterations = num_iterations
        self.epoch = epoch
        self.num_epochs = num_epochs
        self.checkpoint = checkpoint


class _DeferredSigint:
    """While entered (in the main thread), SIGINT sets ``requested`` instead of raising.

    A KeyboardInterrupt raised wherever the main thread happens to be can land inside a
    Numba dispatch (which turns it into a chain of SystemErrors), inside a checkpoint write,
    or inside a weakref callback (where Python prints it and carries on: training went on to
    the end).  So the handler only records the request and the training loop acts on it
    between iterations.  A second SIGINT means "now": it removes a checkpoint temporary
    being written (the previous checkpoint is intact: it is only ever replaced by a rename)
    and exits with status 130 at once.

    Entering nests (the CLI holds it for a whole command, the solver for ``train``); the
    previous handler is restored when the outermost ``with`` ends.  Outside the main thread,
    or where SIGINT is ignored, it does nothing.
    """

    def __init__(self):
        self.requested = False
        self._depth = 0
        self._previous = None

    def __enter__(self):
        if self._depth == 0:
            self.requested = False
            self._previous = None
            if threading.current_thread() is threading.main_thread():
                current = signal.getsignal(signal.SIGINT)
                # SIG_IGN: the user ignores SIGINT; None: a handler set outside Python, which
                # could not be put back afterwards.  Both are left alone.
                if current is not signal.SIG_IGN and current is not None:
                    self._previous = signal.signal(signal.SIGINT, self._handle)
        self._depth += 1
        return self

    def __exit__(self, *exc_info):
        self._depth -= 1
        if self._depth == 0 and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False

    def _handle(self, signum, frame):
        if not self.requested:
            self.requested = True
            # os.write, not print: a handler may run in the middle of a print to sys.stderr.
            os.write(2, b"\nInterrupted: stopping after the current iteration "
                        b"(Ctrl-C again to exit at once).\n")
            return
        for path in list(TEMPORARIES):
            with contextlib.suppress(OSError):
                os.unlink(path)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # e.g. a reentrant flush: nothing to do
                stream.flush()
        os.write(2, b"\nInterrupted twice: exiting now.\n")
        os._exit(130)

    def check(self):
        """Raise KeyboardInterrupt if SIGINT arrived: call at a point where stopping is safe."""
        if self.requested:
            raise KeyboardInterrupt


#: The one SIGINT deferral of the process (signal handlers are process-wide).
deferred_sigint = _DeferredSigint()


def clip_grad_norm(grads, max_norm):
    """Scale all gradients by one factor so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of arrays
    max_norm : float > 0

    Returns
    -------
    clipped : dict of new arrays (same keys and dtypes); the input is not modified
    norm : float, the global norm before clipping
    """
    norm = _global_norm(grads)
    if norm <= max_norm:
        return dict(grads), norm
    scale = max_norm / norm
    return {k: (g * scale).astype(g.dtype, copy=False) for k, g in grads.items()}, norm


class BaseSolver:
    """Minibatch gradient descent on a model with ``params`` and ``loss(*batch) -> (loss, grads)``.

    Subclasses define :meth:`_num_train` (training rows), :meth:`_minibatch` (the arguments
    of ``model.loss`` for one random minibatch) and, optionally, :meth:`_evaluate` (what is
    measured at an epoch's end) and ``epoch_histories`` (the lists it appends to, which
    checkpoints keep).

    Keyword arguments shared by every solver: ``update_rule`` ('sgd'), ``optim_config`` ({}),
    ``lr_decay`` (1.0), ``batch_size`` (100), ``num_epochs`` (10), ``print_every`` (10),
    ``verbose`` (True), ``grad_clip`` (None), ``checkpoint_dir`` (None), ``resume`` (None),
    ``rng`` (None: the global ``np.random`` stream, as the classic solvers).
    """

    #: The solver's name in a checkpoint: a checkpoint resumes only in its own kind of solver.
    kind = None
    #: Lists appended to at epoch ends (besides ``loss_history``), kept in checkpoints.
    epoch_histories = ()

    def __init__(self, model, data, **kwargs):
        self.model = model
        self.data = data
        update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = kwargs.pop("batch_size", 100)
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        self.grad_clip = kwargs.pop("grad_clip", None)
        self.checkpoint_dir = kwargs.pop("checkpoint_dir", None)
        resume = kwargs.pop("resume", None)
        rng = kwargs.pop("rng", None)
        if kwargs:
            extra = ", ".join(f'"{k}"' for k in kwargs)
            raise ValueError(f"Unrecognized arguments {extra}")
        if not isinstance(update_rule, str) or update_rule not in optim.__all__:
            raise ValueError(f'Invalid update_rule "{update_rule}": expected one of {optim.__all__}')
        self.batch_size = check_count("batch_size", self.batch_size)
        self.print_every = check_count("print_every", self.print_every)
        self.num_epochs = check_count("num_epochs", self.num_epochs, minimum=0)
        _check_number("lr_decay", self.lr_decay, positive=True)
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, positive=True)
        if not isinstance(self.optim_config, dict):
            raise ValueError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        if "learning_rate" in self.optim_config:
            _check_number("optim_config['learning_rate']", self.optim_config["learning_rate"],
                          nonnegative=True)
        if self.checkpoint_dir is not None:
            check_checkpoint_dir(self.checkpoint_dir)
        self.update_rule_name = update_rule
        self.update_rule = getattr(optim, update_rule)
        self.rng = None if rng is None else np.random.default_rng(rng)
        #: None, or (path, epoch, iteration) of the last complete checkpoint written or resumed.
        self.last_checkpoint = None
        self._reset()
        if resume is not None:
            self.load_checkpoint(resume)

    # ------------------------------------------------------------------ what subclasses define
    def _num_train(self):
        """The number of training rows (an epoch is num_train // batch_size iterations)."""
        raise NotImplementedError

    def _minibatch(self):
        """The arguments of ``model.loss`` for one random training minibatch."""
        raise NotImplementedError

    def _evaluate(self, bar):
        """Measure the model at an epoch's end and append to the epoch histories."""

    # ------------------------------------------------------------------ training
    def _reset(self):
        """Fresh bookkeeping: epoch 0, empty histories, one copy of optim_config per parameter."""
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        for name in self.epoch_histories:
            setattr(self, name, [])
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    @property
    def checkpoint_path(self):
        """``checkpoint_dir/checkpoint.h5``, or None without a checkpoint_dir."""
        if self.checkpoint_dir is None:
            return None
        return os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_FILE)

    def _iterations_per_epoch(self):
        return max(self._num_train() // self.batch_size, 1)

    def _step(self):
        """One gradient update on a random minibatch; appends the loss to loss_history.

        Nothing is changed unless the loss, every gradient and every updated parameter are
        finite: otherwise NonFiniteError, with the model and optimizer state of the last good
        iteration.
        """
        batch = self._minibatch()
        # Overflow is looked for below and reported as NonFiniteError, naming the parameter;
        # NumPy's RuntimeWarnings on the way there would only say "overflow in cast".
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._checked_update(*batch)

    def _checked_update(self, *batch):
        loss, grads = self.model.loss(*batch)
        params = self.model.params
        if not np.isfinite(loss):
            raise self._non_finite(f"the loss is {float(loss)}", None, next(iter(params)))
        scale = 1.0
        if self.grad_clip is not None:
            norm = _global_norm(grads)
            if not math.isfinite(norm):
                self._refuse_non_finite_gradients(grads)
            if norm > self.grad_clip:
                scale = self.grad_clip / norm
        if self.update_rule is optim.adam:
            # One pass a parameter: the update and the finiteness of gradient and new weights.
            updates = {p: optim.adam_counting(w, grads[p], dict(self.optim_configs[p]), scale)
                       for p, w in params.items()}
            for p, (_, _, gradient_finite, _) in updates.items():
                if not gradient_finite:
                    raise self._non_finite(f"the gradient of {p!r} is not finite", p, p)
            for p, (next_w, config, _, weights_finite) in updates.items():
                if not weights_finite:
                    raise self._non_finite(f"parameter {p!r} is not finite after the update",
                                           p, p, config)
            next_params = {p: update[0] for p, update in updates.items()}
            next_configs = {p: update[1] for p, update in updates.items()}
        else:
            self._refuse_non_finite_gradients(grads)
            if scale != 1.0:
                grads = {k: (g * scale).astype(g.dtype, copy=False) for k, g in grads.items()}
            next_params, next_configs = {}, {}
            for p, w in params.items():
                # A copy of the config: the rules update theirs in place (setdefault, new arrays).
                next_w, next_configs[p] = self.update_rule(w, grads[p], dict(self.optim_configs[p]))
                if not np.isfinite(next_w).all():
                    raise self._non_finite(f"parameter {p!r} is not finite after the update",
                                           p, p, next_configs[p])
                next_params[p] = next_w
        self.loss_history.append(float(loss))
        params.update(next_params)
        self.optim_configs = next_configs

    def _refuse_non_finite_gradients(self, grads):
        for name, grad in grads.items():
            if not np.isfinite(grad).all():
                raise self._non_finite(f"the gradient of {name!r} is not finite", name, name)

    def _non_finite(self, what, name, config_name, config=None):
        config = self.optim_configs[config_name] if config is None else config
        learning_rate = config.get("learning_rate")
        where = (f"the last complete checkpoint, {self.last_checkpoint[0]!r} (epoch "
                 f"{self.last_checkpoint[1]}), is untouched" if self.last_checkpoint else
                 "no checkpoint was written")
        rate = "the rule's default" if learning_rate is None else repr(learning_rate)
        return NonFiniteError(
            f"iteration {self.iteration + 1}: {what} (learning_rate={rate}, update_rule="
            f"{self.update_rule_name!r}); training stopped before this update: the model holds "
            f"the weights of iteration {self.iteration} and {where}. Try a smaller learning "
            "rate or grad_clip.", self.iteration + 1, name, learning_rate)

    def train(self):
        """Run the remaining iterations of ``num_epochs`` epochs (all of them unless resumed).

        Raises
        ------
        TrainingInterrupted
            After Ctrl-C (SIGINT), at the end of the iteration it arrived in; the state
            (model, optimizer, histories, checkpoint) is that of a complete iteration.
        NonFiniteError
            When an iteration gives a non-finite loss, gradient or parameter.
        """
        bar_class = _progress_bar_class()
        iterations_per_epoch = self._iterations_per_epoch()
        num_iterations = self.num_epochs * iterations_per_epoch
        bar = bar_class(total=num_iterations, initial=min(self.iteration, num_iterations),
                        disable=not self.verbose, desc="train", unit="it", dynamic_ncols=True)
        try:
            with deferred_sigint:
                for t in range(self.iteration, num_iterations):
                    self._step()
                    self.iteration = t + 1
                    bar.update(1)
                    if self.verbose:
                        bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", refresh=False)
                    if self.verbose and t % self.print_every == 0:
                        bar.write("(Iteration %d / %d) loss: %f" % (t + 1, num_iterations,
                                                                  self.loss_history[-1]))
                    if (t + 1) % iterations_per_epoch == 0:
                        self._end_epoch(bar)
                    elif t == 0:
                        self._after_first_iteration(bar)
                    if deferred_sigint.requested:  # the one place an interrupt is acted on
                        raise TrainingInterrupted(self.iteration, num_iterations, self.epoch,
                                                  self.num_epochs, self.last_checkpoint)
        finally:
            bar.close()
        self._finish_training()

    def _after_first_iteration(self, bar):
        """Called after iteration 1 unless it also ended an epoch."""

    def _finish_training(self):
        """Called when every iteration has run."""

    def _end_epoch(self, bar):
        self.epoch += 1
        for config in self.optim_configs.values():
            config["learning_rate"] *= self.lr_decay
        self._evaluate(bar)
        self._write_checkpoints()

    def _write_checkpoints(self):
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self.checkpoint_path)

    # ------------------------------------------------------------------ checkpoints
    def _vocabulary(self):
        for source, key in ((self.data, "word_to_idx"), (self.data, "word_to_ix"),
                            (self.model, "word_to_idx"), (self.model, "word_to_ix")):
            vocabulary = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
            if isinstance(vocabulary, dict):
                return vocabulary
        return None

    def _model_config(self):
        """The model's constructor keywords as JSON-ready values ({} without ``config()``)."""
        config = getattr(self.model, "config", None)
        return json.loads(json_text(config())) if callable(config) else {}

    def save_checkpoint(self, path):
        """Write the full training state to the HDF5 file ``path``, atomically, with a digest."""
        rng_kind = "global" if self.rng is None else "generator"
        rng_state = np.random.get_state(legacy=False) if self.rng is None else self.rng.bit_generator.state
        attrs = {"epoch": self.epoch, "iteration": self.iteration,
                 "update_rule": self.update_rule_name, "batch_size": self.batch_size,
                 "rng_kind": rng_kind, "model_kind": type(self.model).__name__,
                 "solver": self.kind}
        if getattr(self.model, "cell_type", None) is not None:
            attrs["cell_type"] = self.model.cell_type
        texts = {"rng_state": json_text(rng_state),
                 "model_config": json.dumps(self._model_config())}
        vocabulary = self._vocabulary()
        if vocabulary is not None:
            texts["word_to_idx"] = json.dumps(vocabulary)
        groups = {"params": self.model.params, "optim": self.optim_configs}
        if self.best_params:
            attrs["best_val_acc"] = float(self.best_val_acc)
            groups["best_params"] = self.best_params
        histories = {name: getattr(self, name) for name in ("loss_history",) + self.epoch_histories}
        write_checkpoint(path, attrs, texts, groups, histories)
        self.last_checkpoint = (os.fspath(path), self.epoch, self.iteration)

    def load_checkpoint(self, path):
        """Restore the state written by :meth:`save_checkpoint` (see ``resume``).

        All or nothing: the whole file is validated (digest, every key, shape, dtype and value
        range, and its fit to this model, solver and data) before any state is replaced.

        Raises
        ------
        FileNotFoundError, CheckpointError (a damaged or inconsistent file), or ValueError (a
        valid checkpoint of another model, solver or data set); each names the file.
        """
        self.restore_checkpoint(read_checkpoint(path), path)

    def restore_checkpoint(self, checkpoint, path):
        """:meth:`load_checkpoint` from ``checkpoint = read_checkpoint(path)``, already read."""
        path = os.fspath(path)
        attrs = checkpoint["attrs"]
        for name in ("update_rule", "batch_size"):
            mine = self.update_rule_name if name == "update_rule" else self.batch_size
            if attrs[name] != mine:
                raise ValueError(f"checkpoint {path!r} was trained with {name}={attrs[name]!r}, "
                                 f"this solver has {name}={mine!r}")
        solver = attrs.get("solver", "CaptioningSolver")  # versions 1 and 2: captioning only
        if solver != self.kind:
            raise ValueError(f"checkpoint {path!r} was written by a {solver}, this is a {self.kind}")
        kind = attrs.get("model_kind")
        if kind is not None and kind != type(self.model).__name__:
            raise ValueError(f"checkpoint {path!r} holds a {kind}, this model is a "
                             f"{type(self.model).__name__}")
        stored, mine = checkpoint["model_config"], self._model_config()
        if stored is not None and stored != mine:
            differ = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
            raise ValueError(f"checkpoint {path!r} holds a model built with "
                             + ", ".join(f"{k}={stored.get(k)!r}" for k in differ)
                             + "; this model has " + ", ".join(f"{k}={mine.get(k)!r}" for k in differ))
        params = checkpoint["params"]
        for name, value in self.model.params.items():
            if name not in params:
                raise ValueError(f"checkpoint {path!r} has no parameter {name!r}")
            if params[name].shape != value.shape or params[name].dtype != value.dtype:
                raise ValueError(f"checkpoint {path!r}: parameter {name!r} is {params[name].shape} "
                                 f"{params[name].dtype}, the model has {value.shape} {value.dtype}")
        extra = sorted(set(params) - set(self.model.params))
        if extra:
            raise ValueError(f"checkpoint {path!r} has parameters the model does not: {extra}")
        model_cell = getattr(self.model, "cell_type", None)
        if "cell_type" in attrs and model_cell is not None and attrs["cell_type"] != model_cell:
            raise ValueError(f"checkpoint {path!r} holds an {attrs['cell_type']!r} model, this "
                             f"model is {model_cell!r}")
        per_epoch = self._iterations_per_epoch()
        if attrs["iteration"] != attrs["epoch"] * per_epoch:
            raise ValueError(
                f"checkpoint {path!r} was written after epoch {attrs['epoch']} at iteration "
                f"{attrs['iteration']}, but these data give {per_epoch} iterations per epoch "
                f"({self._num_train()} training rows, batch_size {self.batch_size}): resume "
                "with the data (and max_train) it was trained on")

        # Everything checked: from here on nothing can fail half-way.
        for name in self.model.params:
            self.model.params[name] = params[name]
        self.optim_configs = {name: checkpoint["optim"][name] for name in self.model.params}
        self.epoch = attrs["epoch"]
        self.iteration = attrs["iteration"]
        for name in ("loss_history",) + self.epoch_histories:
            setattr(self, name, list(checkpoint["history"][name]))
        self.best_params = dict(checkpoint["best_params"] or {})
        self.best_val_acc = attrs.get("best_val_acc", 0)
        if attrs["rng_kind"] == "global":
            np.random.set_state(checkpoint["rng_state"])
            self.rng = None
        else:
            bit_generator = getattr(np.random, checkpoint["rng_state"]["bit_generator"])()
            bit_generator.state = checkpoint["rng_state"]
            self.rng = np.random.Generator(bit_generator)
        self.last_checkpoint = (path, self.epoch, self.iteration)

def _global_norm(grads):
    """The L2 norm of all gradients together, accumulated in float64."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))


def _progress_bar_class():
    """tqdm's notebook-aware bar (a widget in Jupyter, text elsewhere).

    Without ipywidgets, tqdm.auto warns once and falls back to the text bar; that warning is
    about the user's Jupyter setup, not about their training, so it is not passed on.
    """
    with warnings.catch_warnings():
        from tqdm import TqdmWarning

        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm


def _check_number(name, value, positive=False, nonnegative=False):
    """ValueError naming ``name`` unless ``value`` is a finite real number (> 0 / >= 0)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and nonnegative:
        ok = value >= 0
    if not ok:
        kind = "positive " if positive else "non-negative " if nonnegative else ""
        raise ValueError(f"{name} must be a finite {kind}number, got {value!r}")


