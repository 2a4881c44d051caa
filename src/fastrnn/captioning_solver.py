"""Training loop for captioning models, a drop-in for the classic ``CaptioningSolver``.

Beyond the classic solver (all of whose keyword arguments and behaviour are kept), it can
show a progress bar, clip the gradient norm, evaluate loss and BLEU on the validation split at
every epoch end, and write checkpoints to HDF5 from which a run resumes on exactly the
trajectory it would have followed uninterrupted.  It also fails loudly and stops cleanly:

* Ctrl-C (SIGINT) during :meth:`CaptioningSolver.train` sets a flag that is read after each
  iteration, so training stops between iterations, never inside a kernel or a checkpoint
  write, and :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) is raised.  A second
  Ctrl-C exits the process at once (status 130) after removing a checkpoint being written.
* A non-finite loss, gradient or updated parameter raises :class:`NonFiniteError` before
  anything is updated or written.
* A checkpoint carries a SHA-256 digest of its whole HDF5 content; a damaged file is reported
  (:class:`CheckpointError`) before HDF5 parses a byte of it, and a resumed checkpoint is
  validated in full before the model or the solver is touched.

A checkpoint (``<checkpoint_dir>/checkpoint.h5``, rewritten at every epoch end) holds::

    userblock the first 512 bytes, which HDF5 leaves to the user: a text header
              ("fastrnn checkpoint", the SHA-256 and the length of everything after it)
    attrs     format, version, epoch, iteration, update_rule, batch_size, rng_kind, and
              cell_type when the model has one
    json/     rng_state and, when the data have one, word_to_idx: JSON text as scalar string
              datasets (attributes are limited to 64 KiB; a large vocabulary would not fit)
    params/   one dataset per model parameter
    optim/    one group per parameter: array state (m, v, velocity, cache) as datasets,
              scalars (learning_rate, t, beta1, ...) as attributes
    history/  loss_history, val_loss_history, val_bleu_history, val_bleu4_history

The digest covers every byte of the HDF5 file (every dataset, attribute and the structure
that holds them), and it is checked on the raw bytes, so a corrupted file never reaches the
HDF5 parser (damaged metadata can make it fail obscurely or loop).  Checkpoints of version 1,
written before the digest, still load, with a warning.

It is written to a temporary file in the same directory, flushed to disk, then renamed over
the old one (``os.replace`` is atomic), so a run killed during the write leaves the previous
checkpoint intact.  The temporary file's name holds the writer's process id; a later write
removes the ones whose process is gone (left by a run killed mid-write).  No pickle is involved.
"""
import contextlib
import glob
import hashlib
import io
import json
import math
import numbers
import os
import signal
import sys
import tempfile
import threading
import warnings

import numpy as np

from fastrnn import optim
from fastrnn._limits import check_count, check_fits_in_memory
from fastrnn.coco_utils import sample_coco_minibatch

__all__ = ["CaptioningSolver", "clip_grad_norm", "read_checkpoint", "check_checkpoint_dir",
           "CheckpointError", "NonFiniteError", "TrainingInterrupted", "deferred_sigint"]

CHECKPOINT_FORMAT = "fastrnn-captioning-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the digest header in the userblock; 1: no digest
CHECKPOINT_FILE = "checkpoint.h5"
_HISTORIES = ("loss_history", "val_loss_history", "val_bleu_history", "val_bleu4_history")
USERBLOCK_SIZE = 512  # the smallest HDF5 allows
_HEADER_MAGIC = b"fastrnn checkpoint\n"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, incomplete or inconsistent; the message names the file
    and the key."""


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
    """Ctrl-C stopped :meth:`CaptioningSolver.train` between two iterations.

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
        for path in list(_TEMPORARIES):
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
# Paths of checkpoint temporaries being written, for the second-SIGINT exit to remove.
_TEMPORARIES = set()


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
    norm = float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))
    if norm <= max_norm:
        return dict(grads), norm
    scale = max_norm / norm
    return {k: (g * scale).astype(g.dtype, copy=False) for k, g in grads.items()}, norm


class CaptioningSolver:
    """Train a captioning model with minibatch gradient descent.

    Parameters
    ----------
    model : object
        With ``params`` (dict of arrays) and ``loss(features, captions) -> (loss, grads)``;
        ``sample(features, max_length)`` too if ``validate`` is on.
    data : dict
        As returned by :func:`fastrnn.coco_utils.load_coco_data`.

    Other Parameters
    ----------------
    update_rule : str, default 'sgd'
        Name of a rule in :mod:`fastrnn.optim`.
    optim_config : dict, default {}
        Hyperparameters of the rule; every parameter gets its own copy.
    lr_decay : float, default 1.0
        Every learning_rate is multiplied by this at each epoch end.
    batch_size : int, default 100
    num_epochs : int, default 10
    print_every : int, default 10
    verbose : bool, default True
        Print the classic "(Iteration %d / %d) loss: %f" lines and show a tqdm progress bar.
    grad_clip : float, optional
        Clip the global gradient norm to this value before every update.
    validate : bool, default False
        At each epoch end, record the validation loss (per caption) and BLEU on the first
        ``num_val`` validation rows in ``val_loss_history``, ``val_bleu_history`` (the
        notebook's unigram BLEU) and ``val_bleu4_history``.
    num_val : int, default 500
    checkpoint_dir : str, optional
        Write ``checkpoint_dir/checkpoint.h5`` at each epoch end.
    resume : str, optional
        Path of a checkpoint to continue from: parameters, optimizer state, epoch, iteration,
        histories and the random state of minibatch sampling are restored.
    rng : numpy.random.Generator or int, optional
        Source of minibatch sampling; default the global ``np.random`` stream (classic).

    Raises
    ------
    ValueError
        For an unknown keyword argument or update rule, a hyperparameter that is not a finite
        number in its range, a ``checkpoint_dir`` that cannot be written, or a ``resume``
        checkpoint that does not fit this model, solver and data (:class:`CheckpointError`
        when the file itself is damaged).  All of it is checked here, before any training.
    """

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
        self.validate = kwargs.pop("validate", False)
        self.num_val = kwargs.pop("num_val", 500)
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
        self.num_val = check_count("num_val", self.num_val)
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

    def _reset(self):
        """Fresh bookkeeping: epoch 0, empty histories, one copy of optim_config per parameter."""
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.val_loss_history = []
        self.val_bleu_history = []
        self.val_bleu4_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    @property
    def checkpoint_path(self):
        """``checkpoint_dir/checkpoint.h5``, or None without a checkpoint_dir."""
        if self.checkpoint_dir is None:
            return None
        return os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_FILE)

    def _iterations_per_epoch(self):
        return max(self.data["train_captions"].shape[0] // self.batch_size, 1)

    def _step(self):
        """One gradient update on a random minibatch; appends the loss to loss_history.

        Nothing is changed unless the loss, every gradient and every updated parameter are
        finite: otherwise NonFiniteError, with the model and optimizer state of the last good
        iteration.
        """
        captions, features, _ = sample_coco_minibatch(self.data, batch_size=self.batch_size,
                                                      split="train", rng=self.rng)
        # Overflow is looked for below and reported as NonFiniteError, naming the parameter;
        # NumPy's RuntimeWarnings on the way there would only say "overflow in cast".
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._checked_update(features, captions)

    def _checked_update(self, features, captions):
        loss, grads = self.model.loss(features, captions)
        first = next(iter(self.model.params))
        if not np.isfinite(loss):
            raise self._non_finite(f"the loss is {float(loss)}", None, first)
        for name, grad in grads.items():
            if not np.isfinite(grad).all():
                raise self._non_finite(f"the gradient of {name!r} is not finite", name, name)
        if self.grad_clip is not None:
            grads, _ = clip_grad_norm(grads, self.grad_clip)
        next_params, next_configs = {}, {}
        for p, w in self.model.params.items():
            # A copy of the config: the rules update theirs in place (setdefault, new arrays).
            next_w, next_configs[p] = self.update_rule(w, grads[p], dict(self.optim_configs[p]))
            if not np.isfinite(next_w).all():
                raise self._non_finite(f"parameter {p!r} is not finite after the update", p, p,
                                       next_configs[p])
            next_params[p] = next_w
        self.loss_history.append(float(loss))
        self.model.params.update(next_params)
        self.optim_configs = next_configs

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

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Kept for API compatibility: the classic solver never implemented it either."""
        return 0.0

    def validation_metrics(self):
        """Loss per caption and BLEU of the model on the first ``num_val`` validation rows.

        Returns
        -------
        dict with ``loss``, ``bleu1`` and ``bleu4``.
        """
        from fastrnn.metrics import evaluate_captions

        captions = self.data["val_captions"][:self.num_val]
        image_idxs = self.data["val_image_idxs"][:self.num_val]
        total = 0.0
        for start in range(0, captions.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            features = self.data["val_features"][image_idxs[rows]]
            loss, _ = self.model.loss(features, captions[rows])
            total += float(loss) * captions[rows].shape[0]
        scores = evaluate_captions(self.model, self.data, "val", max_examples=self.num_val)
        return {"loss": total / captions.shape[0], "bleu1": scores["bleu1"], "bleu4": scores["bleu4"]}

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
                    if deferred_sigint.requested:  # the one place an interrupt is acted on
                        raise TrainingInterrupted(self.iteration, num_iterations, self.epoch,
                                                  self.num_epochs, self.last_checkpoint)
        finally:
            bar.close()

    def _end_epoch(self, bar):
        self.epoch += 1
        for config in self.optim_configs.values():
            config["learning_rate"] *= self.lr_decay
        if self.validate:
            metrics = self.validation_metrics()
            self.val_loss_history.append(metrics["loss"])
            self.val_bleu_history.append(metrics["bleu1"])
            self.val_bleu4_history.append(metrics["bleu4"])
            if self.verbose:
                bar.write("(Epoch %d / %d) val loss: %f, val BLEU-1: %.4f, BLEU-4: %.4f"
                          % (self.epoch, self.num_epochs, metrics["loss"], metrics["bleu1"],
                             metrics["bleu4"]))
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self.checkpoint_path)

    # ----------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path):
        """Write the full training state to the HDF5 file ``path``, atomically, with a digest."""
        rng_kind = "global" if self.rng is None else "generator"
        rng_state = np.random.get_state(legacy=False) if self.rng is None else self.rng.bit_generator.state
        attrs = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "epoch": self.epoch, "iteration": self.iteration,
            "update_rule": self.update_rule_name, "batch_size": self.batch_size,
            "rng_kind": rng_kind,
        }
        json_texts = {"rng_state": json.dumps(rng_state, default=_json_array)}
        if getattr(self.model, "cell_type", None) is not None:
            attrs["cell_type"] = self.model.cell_type
        if "word_to_idx" in self.data:
            json_texts["word_to_idx"] = json.dumps(self.data["word_to_idx"])

        def write(h5file):
            h5file.attrs.update(attrs)
            texts = h5file.create_group("json")
            for name, text in json_texts.items():
                texts.create_dataset(name, data=text)
            params = h5file.create_group("params")
            for name, value in self.model.params.items():
                params.create_dataset(name, data=value)
            optim_group = h5file.create_group("optim")
            for name, config in self.optim_configs.items():
                group = optim_group.create_group(name)
                for key, value in config.items():
                    if isinstance(value, np.ndarray):
                        group.create_dataset(key, data=value)
                    else:
                        group.attrs[key] = value
            history = h5file.create_group("history")
            for name in _HISTORIES:
                history.create_dataset(name, data=np.asarray(getattr(self, name), dtype=np.float64))

        atomic_write_h5(path, write)
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
                f"({self.data['train_captions'].shape[0]} training captions, batch_size "
                f"{self.batch_size}): resume with the data (and max_train) it was trained on")

        # Everything checked: from here on nothing can fail half-way.
        for name in self.model.params:
            self.model.params[name] = params[name]
        self.optim_configs = {name: checkpoint["optim"][name] for name in self.model.params}
        self.epoch = attrs["epoch"]
        self.iteration = attrs["iteration"]
        for name in _HISTORIES:
            setattr(self, name, list(checkpoint["history"][name]))
        if attrs["rng_kind"] == "global":
            np.random.set_state(checkpoint["rng_state"])
            self.rng = None
        else:
            bit_generator = getattr(np.random, checkpoint["rng_state"]["bit_generator"])()
            bit_generator.state = checkpoint["rng_state"]
            self.rng = np.random.Generator(bit_generator)
        self.last_checkpoint = (path, self.epoch, self.iteration)


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


def check_checkpoint_dir(directory):
    """ValueError unless checkpoints can be written in ``directory`` (created when missing).

    Checked before training, so that a bad directory is not found after a whole epoch.
    """
    path = os.path.abspath(os.fspath(directory))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"checkpoint_dir {os.fspath(directory)!r} cannot be created: "
                         f"{existing!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"checkpoint_dir {os.fspath(directory)!r}: {existing!r} is not writable")
    target = os.path.join(path, CHECKPOINT_FILE)
    if os.path.isdir(target):
        raise ValueError(f"checkpoint_dir {os.fspath(directory)!r}: {target!r} is a directory; "
                         "the checkpoint file cannot be written there")


def _json_array(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


# ------------------------------------------------------------------------------- reading
def _digest_header(body):
    """The userblock of a checkpoint whose HDF5 content is ``body``."""
    text = (_HEADER_MAGIC + b"sha256 " + hashlib.sha256(body).hexdigest().encode("ascii")
            + b"\nbytes " + str(len(body)).encode("ascii") + b"\n")
    return text.ljust(USERBLOCK_SIZE, b"\0")


def _read_verified_bytes(path):
    """The file's bytes, after checking its digest; and whether it had one (version 2)."""
    size = os.path.getsize(path)
    check_fits_in_memory(size, f"checkpoint {path!r}")
    with open(path, "rb") as f:
        content = f.read()
    if content.startswith(_HEADER_MAGIC):
        if len(content) < USERBLOCK_SIZE \
                or content[:USERBLOCK_SIZE] != _digest_header(content[USERBLOCK_SIZE:]):
            raise CheckpointError(f"checkpoint {path!r} is corrupt (digest mismatch): it changed "
                                  "after it was written; nothing of it was loaded")
        return content, True
    if content.startswith(_HDF5_SIGNATURE):
        return content, False
    raise CheckpointError(f"checkpoint {path!r} is corrupt or not a fastrnn checkpoint (it starts "
                          "with neither the fastrnn digest header nor an HDF5 signature)")


class _Reader:
    """Reads one checkpoint's HDF5 objects; every failure names the file and the key."""

    def __init__(self, path, h5file, file_size):
        self.path = path
        self.h5file = h5file
        self.file_size = file_size

    def error(self, key, message):
        return CheckpointError(f"checkpoint {self.path!r}: {key!r} {message}")

    def get(self, key, kind):
        """The group or dataset at ``key`` (h5py.Group / h5py.Dataset)."""
        try:
            item = self.h5file.get(key)
        except Exception as err:  # damaged HDF5 metadata: h5py raises all sorts (see below)
            raise self.error(key, f"cannot be read ({type(err).__name__}: {err})") from err
        if item is None:
            raise self.error(key, "is missing")
        if not isinstance(item, kind):
            raise self.error(key, f"should be an HDF5 {kind.__name__.lower()}")
        return item

    def members(self, key):
        group = self.get(key, _h5py().Group)
        try:
            return list(group.keys())
        except Exception as err:
            raise self.error(key, f"cannot be listed ({type(err).__name__}: {err})") from err

    def attrs(self, key):
        """The attributes of ``key`` as Python scalars or str."""
        obj = self.h5file if key == "/" else self.get(key, _h5py().Group)
        try:
            return {name: _scalar(value) for name, value in obj.attrs.items()}
        except Exception as err:
            raise self.error(key, f"has unreadable attributes ({type(err).__name__}: {err})") \
                from err

    def array(self, key):
        """A numeric dataset as an ndarray, its declared size checked before it is read."""
        dataset = self.get(key, _h5py().Dataset)
        try:
            dtype, shape = dataset.dtype, dataset.shape
            if dtype.kind not in "fiu" or shape is None:
                raise self.error(key, f"should be a numeric array, got dtype {dtype}")
            # A damaged dimension can declare terabytes; more than the file holds is damage.
            if math.prod(shape) * dtype.itemsize > self.file_size:
                raise self.error(key, f"declares shape {shape} {dtype}, more than the file holds")
            return np.asarray(dataset[()])
        except CheckpointError:
            raise
        except Exception as err:
            raise self.error(key, f"cannot be read ({type(err).__name__}: {err})") from err

    def text(self, key):
        dataset = self.get(key, _h5py().Dataset)
        try:
            if dataset.shape != () or _h5py().check_string_dtype(dataset.dtype) is None:
                raise self.error(key, "should be a scalar string")
            return dataset.asstr()[()]
        except CheckpointError:
            raise
        except Exception as err:
            raise self.error(key, f"cannot be read ({type(err).__name__}: {err})") from err

    def json(self, key):
        text = self.text(key)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as err:
            raise self.error(key, f"is not valid JSON ({type(err).__name__}: {err})") from err


def _h5py():
    import h5py  # imported on use: importing the solver stays cheap

    return h5py


def _scalar(value):
    """h5py attribute -> Python scalar or str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_ATTRIBUTE_CHECKS = {  # attribute: (test, what it must be)
    "format": (lambda v: v == CHECKPOINT_FORMAT, repr(CHECKPOINT_FORMAT)),
    "version": (lambda v: _is_int(v) and 1 <= v <= CHECKPOINT_VERSION,
                f"a known version (1 to {CHECKPOINT_VERSION})"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "iteration": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "update_rule": (lambda v: v in optim.__all__, f"one of {optim.__all__}"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "rng_kind": (lambda v: v in ("global", "generator"), "'global' or 'generator'"),
}
_UNIT_INTERVAL = (lambda v: _is_finite_number(v) and 0 <= v < 1, "a number in [0, 1)")
_NON_NEGATIVE = (lambda v: _is_finite_number(v) and v >= 0, "a finite number >= 0")
_OPTIM_SCALARS = {
    "learning_rate": _NON_NEGATIVE, "epsilon": _NON_NEGATIVE, "momentum": _UNIT_INTERVAL,
    "decay_rate": _UNIT_INTERVAL, "beta1": _UNIT_INTERVAL, "beta2": _UNIT_INTERVAL,
    "t": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}
# Array state: must the values be >= 0 (running averages of squares)?
_OPTIM_ARRAYS = {"velocity": False, "cache": True, "m": False, "v": True}
# What each rule holds after its first update (it fills in defaults with setdefault).
_OPTIM_KEYS = {
    "sgd": ("learning_rate",),
    "sgd_momentum": ("learning_rate", "momentum", "velocity"),
    "rmsprop": ("learning_rate", "decay_rate", "epsilon", "cache"),
    "adam": ("learning_rate", "beta1", "beta2", "epsilon", "m", "v", "t"),
}
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def read_checkpoint(path):
    """Read and validate a checkpoint written by :meth:`CaptioningSolver.save_checkpoint`.

    The digest is checked on the raw bytes first; then every key, dtype, shape and value
    range (finite parameters, optimizer state of each parameter's shape with ``v >= 0``,
    known version, update rule and random generator, histories as long as the iterations).
    A file without a digest (version 1) is read with a UserWarning.

    Returns
    -------
    dict with ``attrs`` (dict), ``json`` (dict of JSON texts: rng_state, maybe word_to_idx),
    ``params`` (dict of arrays), ``optim`` (dict of config dicts), ``history`` (dict of
    lists of float) and ``rng_state`` (the validated state: for rng_kind 'global' ready for
    ``np.random.set_state``, else for the ``state`` of its bit generator).

    Raises
    ------
    FileNotFoundError, or CheckpointError (a ValueError) naming the file and the key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    content, has_digest = _read_verified_bytes(path)
    try:
        h5file = _h5py().File(io.BytesIO(content), "r")
    except Exception as err:  # h5py raises OSError, but a damaged file can give others
        raise CheckpointError(f"{path!r} is not a readable HDF5 checkpoint "
                              f"({type(err).__name__}: {err})") from err
    with h5file:
        checkpoint = _read_contents(_Reader(path, h5file, len(content)))
    version = checkpoint["attrs"]["version"]
    if has_digest and version < 2:
        raise CheckpointError(f"checkpoint {path!r}: 'version' is {version} but the file has a "
                              "digest header (version 2 and later)")
    if not has_digest:
        if version >= 2:
            raise CheckpointError(f"checkpoint {path!r} is corrupt: version {version} checkpoints "
                                  "carry a digest header and this one has none")
        warnings.warn(f"checkpoint {path!r} was written before checkpoints carried a digest "
                      "(version 1): its integrity cannot be checked", UserWarning, stacklevel=2)
    return checkpoint


def _read_contents(reader):
    attrs = reader.attrs("/")
    for name, (test, expected) in _ATTRIBUTE_CHECKS.items():
        if name not in attrs:
            raise reader.error(name, "(a root attribute) is missing")
        if not test(attrs[name]):
            raise reader.error(name, f"should be {expected}, got {attrs[name]!r}")
    if "cell_type" in attrs and attrs["cell_type"] not in ("rnn", "lstm"):
        raise reader.error("cell_type", f"should be 'rnn' or 'lstm', got {attrs['cell_type']!r}")
    if attrs["iteration"] < attrs["epoch"]:
        raise reader.error("iteration", f"is {attrs['iteration']}, fewer than the "
                                        f"{attrs['epoch']} epochs done")

    texts = {name: reader.text(f"json/{name}") for name in reader.members("json")}
    if "rng_state" not in texts:
        raise reader.error("json/rng_state", "is missing")
    rng_state = _rng_state(reader, attrs["rng_kind"])
    if "word_to_idx" in texts:
        vocabulary = reader.json("json/word_to_idx")
        if not isinstance(vocabulary, dict) or not all(
                isinstance(w, str) and _is_int(i) for w, i in vocabulary.items()):
            raise reader.error("json/word_to_idx", "should map words to integer indices")

    params = {}
    for name in reader.members("params"):
        value = reader.array(f"params/{name}")
        if value.dtype.kind != "f":
            raise reader.error(f"params/{name}", f"should be floats, got dtype {value.dtype}")
        if not np.isfinite(value).all():
            raise reader.error(f"params/{name}", "holds non-finite values")
        params[name] = value
    if not params:
        raise reader.error("params", "holds no parameter")

    optim_names = reader.members("optim")
    for name in optim_names:
        if name not in params:
            raise reader.error(f"optim/{name}", "is the state of a parameter the file does not hold")
    optim_state = {name: _optim_config(reader, name, params[name], attrs)
                   for name in params}

    history = {}
    for name in _HISTORIES:
        key = f"history/{name}"
        values = reader.array(key)
        if values.ndim != 1 or values.dtype.kind != "f" or not np.isfinite(values).all():
            raise reader.error(key, f"should be a 1-D array of finite floats, got shape "
                                    f"{values.shape} dtype {values.dtype}")
        history[name] = [float(x) for x in values]
    if len(history["loss_history"]) != attrs["iteration"]:
        raise reader.error("history/loss_history", f"has {len(history['loss_history'])} "
                           f"entries, one per iteration ({attrs['iteration']}) expected")
    for name in _HISTORIES[1:]:
        if len(history[name]) > attrs["epoch"]:
            raise reader.error(f"history/{name}", f"has {len(history[name])} entries, more "
                               f"than the {attrs['epoch']} epochs")
    return {"attrs": attrs, "json": texts, "params": params, "optim": optim_state,
            "history": history, "rng_state": rng_state}


def _optim_config(reader, name, param, attrs):
    """The validated optimizer state of parameter ``name``."""
    key = f"optim/{name}"
    config = reader.attrs(key)
    for scalar_name, value in config.items():
        test, expected = _OPTIM_SCALARS.get(scalar_name, (_is_finite_number, "a finite number"))
        if not test(value):
            raise reader.error(f"{key}/{scalar_name}", f"should be {expected}, got {value!r}")
    for array_name in reader.members(key):
        array_key = f"{key}/{array_name}"
        if array_name not in _OPTIM_ARRAYS:
            raise reader.error(array_key, "is not optimizer state this solver knows")
        value = reader.array(array_key)
        if value.shape != param.shape or value.dtype.kind != "f":
            raise reader.error(array_key, f"should be a float array of its parameter's shape "
                                          f"{param.shape}, got shape {value.shape} dtype {value.dtype}")
        if not np.isfinite(value).all() or (_OPTIM_ARRAYS[array_name] and (value < 0).any()):
            raise reader.error(array_key, "should be finite" + (" and >= 0" if _OPTIM_ARRAYS[array_name]
                                                                 else ""))
        config[array_name] = value
    if attrs["iteration"] > 0:
        for required in _OPTIM_KEYS[attrs["update_rule"]]:
            if required not in config:
                raise reader.error(f"{key}/{required}", f"is missing (the {attrs['update_rule']} "
                                                        "state after an update)")
    return config


def _rng_state(reader, rng_kind):
    """The stored random state, validated by loading it into a throwaway generator."""
    key = "json/rng_state"
    state = reader.json(key)
    try:
        name = state["bit_generator"]
        if rng_kind == "global":
            if name != "MT19937":
                raise ValueError(f"the global stream is MT19937, not {name!r}")
            state["state"]["key"] = np.asarray(state["state"]["key"], dtype=np.uint32)
            np.random.RandomState().set_state(state)  # raises on a malformed state
            return state
        if name not in _BIT_GENERATORS:
            raise ValueError(f"unknown bit generator {name!r}")
        getattr(np.random, name)().state = state  # raises on a malformed state
        return state
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as err:
        raise reader.error(key, f"is not a valid {rng_kind} random state "
                                f"({type(err).__name__}: {err})") from err


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive under another user (PermissionError), or cannot tell: keep
        return True
    return True


def _remove_orphaned_temporaries(directory, prefix):
    """Delete ``prefix<pid>.*.tmp`` files in ``directory`` whose writing process is gone: what a
    run killed in the middle of :func:`atomic_write_h5` leaves.  A live writer's file (this
    process's or another's) is left alone.  POSIX only (process ids are checked with kill 0)."""
    if os.name != "posix":
        return
    for stale in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*.tmp")):
        pid = os.path.basename(stale)[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) > 0 and not _process_exists(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(stale)


def atomic_write_h5(path, write):
    """Call ``write(h5file)`` on a new HDF5 file that then replaces ``path`` atomically.

    The file is written under a temporary name in the same directory (so the rename stays on
    one file system), its userblock is filled with the digest header (SHA-256 of all the
    HDF5 bytes after it), it is flushed to disk with fsync, and renamed over ``path``.  If
    ``write`` raises, or the process dies, ``path`` still holds its previous content.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    _remove_orphaned_temporaries(directory, prefix)
    fd, tmp_path = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp",
                                    dir=directory)
    os.close(fd)
    _TEMPORARIES.add(tmp_path)
    try:
        with _h5py().File(tmp_path, "w", userblock_size=USERBLOCK_SIZE) as h5file:
            write(h5file)
        with open(tmp_path, "r+b") as f:
            f.seek(USERBLOCK_SIZE)
            header = _digest_header(f.read())
            f.seek(0)
            f.write(header)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    finally:
        _TEMPORARIES.discard(tmp_path)
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
