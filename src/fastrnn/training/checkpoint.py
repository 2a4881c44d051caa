"""Checkpoint files of the solvers: HDF5 with a digest, written atomically, validated in full.

A checkpoint (``<checkpoint_dir>/checkpoint.h5``, rewritten at every epoch end) holds::

    userblock the first 512 bytes, which HDF5 leaves to the user: a text header
              ("fastrnn checkpoint", the SHA-256 and the length of everything after it)
    attrs     format, version, epoch, iteration, update_rule, batch_size, rng_kind; from
              version 3 model_kind (the model's class name) and solver (the solver's); cell_type
              when the model has one; best_val_acc when the solver keeps the best parameters
    json/     rng_state; word_to_idx (the model's vocabulary) when there is one; from version 3
              model_config (the keyword arguments that rebuild the model): JSON text as scalar
              string datasets (attributes are limited to 64 KiB; a large vocabulary would not fit)
    params/   one dataset per model parameter
    best_params/  the parameters of the best validation accuracy so far (:class:`fastrnn.solver.Solver`)
    optim/    one group per parameter: array state (m, v, velocity, cache) as datasets,
              scalars (learning_rate, t, beta1, ...) as attributes
    history/  loss_history (one entry per iteration) and the solver's per-epoch histories

The digest covers every byte of the HDF5 file (every dataset, attribute and the structure
that holds them), and it is checked on the raw bytes, so a corrupted file never reaches the
HDF5 parser (damaged metadata can make it fail obscurely or loop).  Checkpoints of version 1,
written before the digest, still load, with a warning; versions 1 and 2 (format
``fastrnn-captioning-checkpoint``) name no model kind: they hold a CaptioningRNN.

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
import tempfile
import warnings

import numpy as np

from fastrnn import optim
from fastrnn._limits import check_fits_in_memory

__all__ = ["CheckpointError", "read_checkpoint", "write_checkpoint", "atomic_write_h5",
           "check_checkpoint_dir", "CHECKPOINT_FILE"]

CHECKPOINT_FORMAT = "fastrnn-checkpoint"
CHECKPOINT_VERSION = 3  # 3: model kind and configuration; 2: the digest header; 1: no digest
# Versions 1 and 2 were written by the captioning solver alone, under this format name.
_CAPTIONING_FORMAT = "fastrnn-captioning-checkpoint"
CHECKPOINT_FILE = "checkpoint.h5"
USERBLOCK_SIZE = 512  # the smallest HDF5 allows
_HEADER_MAGIC = b"fastrnn checkpoint\n"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Paths of checkpoint temporaries being written, for the second-SIGINT exit to remove.
TEMPORARIES = set()


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, incomplete or inconsistent; the message names the file
    and the key."""


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


def write_checkpoint(path, attrs, texts, groups, histories):
    """Write a checkpoint atomically (see :func:`atomic_write_h5`).

    ``attrs``: root attributes (format and version are added); ``texts``: name -> JSON text,
    under json/; ``groups``: name -> {parameter: array or config dict}; a config dict's arrays
    become datasets and its scalars attributes of the parameter's group; ``histories``:
    name -> list of float, under history/.
    """
    def write(h5file):
        h5file.attrs.update({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **attrs})
        json_group = h5file.create_group("json")
        for name, text in texts.items():
            json_group.create_dataset(name, data=text)
        for group_name, members in groups.items():
            group = h5file.create_group(group_name)
            for name, value in members.items():
                if isinstance(value, dict):
                    member = group.create_group(name)
                    for key, item in value.items():
                        if isinstance(item, np.ndarray):
                            member.create_dataset(key, data=item)
                        else:
                            member.attrs[key] = item
                else:
                    group.create_dataset(name, data=value)
        history = h5file.create_group("history")
        for name, values in histories.items():
            history.create_dataset(name, data=np.asarray(values, dtype=np.float64))

    atomic_write_h5(path, write)


def json_text(value):
    """``value`` as JSON text; NumPy arrays and scalars as lists and numbers."""
    return json.dumps(value, default=_json_array)


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
    "format": (lambda v: v in (CHECKPOINT_FORMAT, _CAPTIONING_FORMAT),
               f"{CHECKPOINT_FORMAT!r} (or {_CAPTIONING_FORMAT!r}, versions 1 and 2)"),
    "version": (lambda v: _is_int(v) and 1 <= v <= CHECKPOINT_VERSION,
                f"a known version (1 to {CHECKPOINT_VERSION})"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "iteration": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "update_rule": (lambda v: v in optim.__all__, f"one of {optim.__all__}"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "rng_kind": (lambda v: v in ("global", "generator"), "'global' or 'generator'"),
}
# Version 3 adds these.
_MODEL_ATTRIBUTE_CHECKS = {
    "model_kind": (lambda v: isinstance(v, str) and v != "", "a model class name"),
    "solver": (lambda v: v in ("CaptioningSolver", "Solver"), "'CaptioningSolver' or 'Solver'"),
}
# The histories each solver keeps (versions 1 and 2: the captioning solver's).
_SOLVER_HISTORIES = {
    "CaptioningSolver": ("loss_history", "val_loss_history", "val_bleu_history",
                         "val_bleu4_history"),
    "Solver": ("loss_history", "train_acc_history", "val_acc_history", "val_mcc_history"),
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
    """Read and validate a checkpoint written by a solver's ``save_checkpoint``.

    The digest is checked on the raw bytes first; then every key, dtype, shape and value
    range (finite parameters, optimizer state of each parameter's shape with ``v >= 0``,
    known version, update rule and random generator, histories as long as the iterations).
    A file without a digest (version 1) is read with a UserWarning.

    Returns
    -------
    dict with ``attrs`` (dict), ``json`` (dict of JSON texts: rng_state, maybe word_to_idx
    and model_config), ``params`` (dict of arrays), ``best_params`` (dict of arrays, or None),
    ``optim`` (dict of config dicts), ``history`` (dict of lists of float), ``model_config``
    (dict, or None before version 3) and ``rng_state`` (the validated state: for rng_kind
    'global' ready for ``np.random.set_state``, else for the ``state`` of its bit generator).

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
    current = attrs["format"] == CHECKPOINT_FORMAT
    if current != (attrs["version"] >= 3):
        raise reader.error("version", f"is {attrs['version']}, but format {attrs['format']!r} "
                           f"is written as version {'3' if current else '1 or 2'}")
    if current:
        for name, (test, expected) in _MODEL_ATTRIBUTE_CHECKS.items():
            if name not in attrs:
                raise reader.error(name, "(a root attribute) is missing")
            if not test(attrs[name]):
                raise reader.error(name, f"should be {expected}, got {attrs[name]!r}")
    if "cell_type" in attrs and attrs["cell_type"] not in ("rnn", "lstm"):
        raise reader.error("cell_type", f"should be 'rnn' or 'lstm', got {attrs['cell_type']!r}")
    if "best_val_acc" in attrs and not (_is_finite_number(attrs["best_val_acc"])
                                        and 0 <= attrs["best_val_acc"] <= 1):
        raise reader.error("best_val_acc", f"should be a number in [0, 1], got "
                                           f"{attrs['best_val_acc']!r}")
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
    model_config = None
    if current:
        if "model_config" not in texts:
            raise reader.error("json/model_config", "is missing")
        model_config = reader.json("json/model_config")
        if not isinstance(model_config, dict):
            raise reader.error("json/model_config", "should be a JSON object (keyword arguments)")

    params = _parameters(reader, "params")
    if not params:
        raise reader.error("params", "holds no parameter")
    best_params = None
    if "best_params" in reader.members("/"):
        best_params = _parameters(reader, "best_params")
        for name, value in params.items():
            best = best_params.get(name)
            if best is None or best.shape != value.shape or best.dtype != value.dtype:
                raise reader.error(f"best_params/{name}", f"should be a {value.shape} "
                                   f"{value.dtype} array, like params/{name}")
        extra = sorted(set(best_params) - set(params))
        if extra:
            raise reader.error(f"best_params/{extra[0]}", "is not a parameter of params/")

    optim_names = reader.members("optim")
    for name in optim_names:
        if name not in params:
            raise reader.error(f"optim/{name}", "is the state of a parameter the file does not hold")
    optim_state = {name: _optim_config(reader, name, params[name], attrs)
                   for name in params}

    names = reader.members("history")
    expected = _SOLVER_HISTORIES[attrs.get("solver", "CaptioningSolver")]
    for name in expected:
        if name not in names:
            raise reader.error(f"history/{name}", "is missing")
    for name in names:
        if name not in expected:
            raise reader.error(f"history/{name}", "is not a history this checkpoint's solver keeps")
    history = {}
    for name in names:
        key = f"history/{name}"
        values = reader.array(key)
        if values.ndim != 1 or values.dtype.kind != "f" or not np.isfinite(values).all():
            raise reader.error(key, f"should be a 1-D array of finite floats, got shape "
                                    f"{values.shape} dtype {values.dtype}")
        history[name] = [float(x) for x in values]
    if len(history["loss_history"]) != attrs["iteration"]:
        raise reader.error("history/loss_history", f"has {len(history['loss_history'])} "
                           f"entries, one per iteration ({attrs['iteration']}) expected")
    # Per-epoch histories: one entry per epoch, plus one after the first iteration for the
    # classic Solver's accuracies.
    most = attrs["epoch"] + (attrs.get("solver") == "Solver" and attrs["iteration"] > 0)
    for name in names:
        if name != "loss_history" and len(history[name]) > most:
            raise reader.error(f"history/{name}", f"has {len(history[name])} entries, more "
                               f"than the {attrs['epoch']} epochs")
    return {"attrs": attrs, "json": texts, "params": params, "optim": optim_state,
            "history": history, "rng_state": rng_state, "model_config": model_config,
            "best_params": best_params}


def _parameters(reader, group):
    """The float, finite datasets of ``group`` (params/ or best_params/)."""
    params = {}
    for name in reader.members(group):
        value = reader.array(f"{group}/{name}")
        if value.dtype.kind != "f":
            raise reader.error(f"{group}/{name}", f"should be floats, got dtype {value.dtype}")
        if not np.isfinite(value).all():
            raise reader.error(f"{group}/{name}", "holds non-finite values")
        params[name] = value
    return params


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
    TEMPORARIES.add(tmp_path)
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
        TEMPORARIES.discard(tmp_path)
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
