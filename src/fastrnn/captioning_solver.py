"""Training loop for captioning models, a drop-in for the classic ``CaptioningSolver``.

Beyond the classic solver (all of whose keyword arguments and behaviour are kept), it can
show a progress bar, clip the gradient norm, evaluate loss and BLEU on the validation split at
every epoch end, and write checkpoints to HDF5 from which a run resumes on exactly the
trajectory it would have followed uninterrupted.

A checkpoint (``<checkpoint_dir>/checkpoint.h5``, rewritten at every epoch end) holds::

    attrs     format, version, epoch, iteration, update_rule, batch_size, rng_kind, and
              cell_type when the model has one
    json/     rng_state and, when the data have one, word_to_idx: JSON text as scalar string
              datasets (attributes are limited to 64 KiB; a large vocabulary would not fit)
    params/   one dataset per model parameter
    optim/    one group per parameter: array state (m, v, velocity, cache) as datasets,
              scalars (learning_rate, t, beta1, ...) as attributes
    history/  loss_history, val_loss_history, val_bleu_history, val_bleu4_history

It is written to a temporary file in the same directory, flushed to disk, then renamed over
the old one (``os.replace`` is atomic), so a run killed during the write leaves the previous
checkpoint intact.  The temporary file's name holds the writer's process id; a later write
removes the ones whose process is gone (left by a run killed mid-write).  No pickle is involved.
"""
import contextlib
import glob
import json
import os
import tempfile

import numpy as np

from fastrnn import optim
from fastrnn.coco_utils import sample_coco_minibatch

__all__ = ["CaptioningSolver", "clip_grad_norm", "read_checkpoint"]

CHECKPOINT_FORMAT = "fastrnn-captioning-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.h5"
_HISTORIES = ("loss_history", "val_loss_history", "val_bleu_history", "val_bleu4_history")


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
        For an unknown keyword argument or update rule.
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
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be a positive number, got {self.grad_clip!r}")
        self.update_rule_name = update_rule
        self.update_rule = getattr(optim, update_rule)
        self.rng = None if rng is None else np.random.default_rng(rng)
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

    def _step(self):
        """One gradient update on a random minibatch; appends the loss to loss_history."""
        captions, features, _ = sample_coco_minibatch(self.data, batch_size=self.batch_size,
                                                      split="train", rng=self.rng)
        loss, grads = self.model.loss(features, captions)
        self.loss_history.append(float(loss))
        if self.grad_clip is not None:
            grads, _ = clip_grad_norm(grads, self.grad_clip)
        for p, w in self.model.params.items():
            next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
            self.model.params[p] = next_w
            self.optim_configs[p] = next_config

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
        """Run the remaining iterations of ``num_epochs`` epochs (all of them unless resumed)."""
        from tqdm import tqdm

        num_train = self.data["train_captions"].shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        bar = tqdm(total=num_iterations, initial=min(self.iteration, num_iterations),
                   disable=not self.verbose, desc="train", unit="it", dynamic_ncols=True)
        try:
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
        """Write the full training state to the HDF5 file ``path``, atomically."""
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

    def load_checkpoint(self, path):
        """Restore the state written by :meth:`save_checkpoint` (see ``resume``)."""
        checkpoint = read_checkpoint(path)
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
        for name in self.model.params:
            self.model.params[name] = params[name]
        self.optim_configs = {name: checkpoint["optim"][name] for name in self.model.params}
        self.epoch = attrs["epoch"]
        self.iteration = attrs["iteration"]
        for name in _HISTORIES:
            setattr(self, name, list(checkpoint["history"][name]))
        rng_state = json.loads(checkpoint["json"]["rng_state"])
        if attrs["rng_kind"] == "global":
            rng_state["state"]["key"] = np.asarray(rng_state["state"]["key"], dtype=np.uint32)
            np.random.set_state(rng_state)
            self.rng = None
        else:
            bit_generator = getattr(np.random, rng_state["bit_generator"])()
            bit_generator.state = rng_state
            self.rng = np.random.Generator(bit_generator)


def _json_array(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def _scalar(value):
    """h5py attribute -> Python scalar or str."""
    return value.item() if isinstance(value, np.generic) else value


def read_checkpoint(path):
    """Read a checkpoint written by :meth:`CaptioningSolver.save_checkpoint`.

    Returns
    -------
    dict with ``attrs`` (dict), ``json`` (dict of JSON texts: rng_state, maybe word_to_idx),
    ``params`` (dict of arrays), ``optim`` (dict of config dicts) and ``history`` (dict of
    lists of float).

    Raises
    ------
    FileNotFoundError, or ValueError naming the file for anything that is not a checkpoint.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        h5file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path!r} is not a readable HDF5 checkpoint ({err})") from err
    with h5file:
        if h5file.attrs.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path!r} is not a fastrnn checkpoint (no format={CHECKPOINT_FORMAT!r})")
        for group in ("json", "params", "optim", "history"):
            if group not in h5file:
                raise ValueError(f"checkpoint {path!r} has no group {group!r}")
        attrs = {k: _scalar(v) for k, v in h5file.attrs.items()}
        texts = {k: v.asstr()[()] for k, v in h5file["json"].items()}
        params = {k: np.asarray(v) for k, v in h5file["params"].items()}
        optim_state = {}
        for name, group in h5file["optim"].items():
            config = {k: _scalar(v) for k, v in group.attrs.items()}
            config.update({k: np.asarray(v) for k, v in group.items()})
            optim_state[name] = config
        history = {k: [float(x) for x in np.asarray(v)] for k, v in h5file["history"].items()}
    return {"attrs": attrs, "json": texts, "params": params, "optim": optim_state,
            "history": history}


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
    one file system), flushed to disk with fsync, and renamed over ``path``.  If ``write``
    raises, or the process dies, ``path`` still holds its previous content.
    """
    import h5py

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    _remove_orphaned_temporaries(directory, prefix)
    fd, tmp_path = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp",
                                    dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp_path, "w") as h5file:
            write(h5file)
        tmp_fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(tmp_fd)
        finally:
            os.close(tmp_fd)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
