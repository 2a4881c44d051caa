"""The ``fastrnn`` command: train, sample, gradcheck, bench.

``fastrnn train`` trains a captioning model end to end (by default an LSTM on the built-in
synthetic dataset, written to the user's cache directory on first use), then prints sample
captions and the validation BLEU of the trained model next to that of the untrained one.
``fastrnn train --model transformer`` trains the problem set's Transformer on the built-in
acceptability corpus (or CoLA files) and prints validation accuracy, Matthews correlation and
judged sentences.  ``fastrnn sample CHECKPOINT`` captions validation images, or judges
sentences, with the model a checkpoint holds (its kind and configuration are in the file).
``fastrnn gradcheck`` checks every layer's and the model's gradients numerically.
``fastrnn bench ...`` runs :func:`fastrnn.bench.main` with the remaining arguments.
"""
import argparse
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import time

import numpy as np

__all__ = ["main"]

DEFAULT_CHECKPOINT_DIR = "checkpoints"
MODEL_DEFAULTS = {"cell_type": "lstm", "wordvec_dim": 64, "hidden_dim": 128}
# The course's sizes (dim_k is also dim_v and dim_q).
TRANSFORMER_DEFAULTS = {"hidden_dim": 128, "num_heads": 2, "dim_feedforward": 2048, "dim_k": 96}
# --model -> the model class a checkpoint names, and the training defaults of each.
MODEL_KINDS = {"captioning": "CaptioningRNN", "transformer": "ClassificationTransformer"}
TRAINING_DEFAULTS = {
    "captioning": {"batch_size": 100, "lr": 5e-3, "lr_decay": 0.95, "num_val": 500},
    "transformer": {"batch_size": 64, "lr": 5e-4, "lr_decay": 1.0, "num_val": None},
}
_ONLY_FOR = {"captioning": ("num_heads", "dim_feedforward", "dim_k"),
             "transformer": ("cell_type", "wordvec_dim")}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command


def _positive_int(text):
    """argparse type: an integer >= 1, also written as a whole float ("1e4")."""
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None
        value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    """argparse type: a finite number > 0 ("1e400" parses as inf and is refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="fastrnn", description="Train and sample fastrnn's models; check gradients; benchmark.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a captioning model (BLEU) or the Transformer (accuracy, MCC)",
        description="Train the captioning LSTM/RNN on COCO-layout data, or with --model "
                    "transformer the problem set's Transformer on CoLA-layout data; by default on "
                    "the built-in synthetic data.  Options default to None so that --resume can "
                    "tell a given option (which must match the checkpoint) from a default.")
    train.add_argument("--model", choices=tuple(MODEL_KINDS), default=None,
                       help="default captioning; with --resume, the checkpoint's")
    train.add_argument("--data-dir", help="COCO-layout (captioning) or CoLA-layout (transformer) "
                       "data directory (default: the built-in synthetic data)")
    train.add_argument("--cell-type", choices=("rnn", "lstm"), default=None,
                       help=f"captioning; default {MODEL_DEFAULTS['cell_type']}")
    train.add_argument("--wordvec-dim", type=_positive_int, default=None,
                       help=f"captioning; default {MODEL_DEFAULTS['wordvec_dim']}")
    train.add_argument("--hidden-dim", type=_positive_int, default=None,
                       help=f"default {MODEL_DEFAULTS['hidden_dim']} (captioning), "
                            f"{TRANSFORMER_DEFAULTS['hidden_dim']} (transformer)")
    train.add_argument("--num-heads", type=_positive_int, default=None,
                       help=f"transformer; default {TRANSFORMER_DEFAULTS['num_heads']}")
    train.add_argument("--dim-feedforward", type=_positive_int, default=None,
                       help=f"transformer; default {TRANSFORMER_DEFAULTS['dim_feedforward']}")
    train.add_argument("--dim-k", type=_positive_int, default=None,
                       help=f"transformer: width of each head's queries, keys and values; "
                            f"default {TRANSFORMER_DEFAULTS['dim_k']}")
    train.add_argument("--epochs", type=_positive_int, default=5, help="total epochs (also when resuming)")
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="default 100 (captioning), 64 (transformer)")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="Adam learning rate, default 5e-3 (captioning), 5e-4 (transformer); "
                            "with --resume the checkpoint's own is used")
    train.add_argument("--lr-decay", type=_positive_float, default=None,
                       help="default 0.95 (captioning), 1.0 (transformer)")
    train.add_argument("--grad-clip", type=_positive_float, default=None, help="max global gradient norm")
    train.add_argument("--max-train", type=_positive_int, default=None,
                       help="use this many training captions / sentences")
    train.add_argument("--num-val", type=_positive_int, default=None,
                       help="validation rows to score: default 500 captions, all sentences")
    train.add_argument("--checkpoint-dir", default=DEFAULT_CHECKPOINT_DIR,
                       help=f"where checkpoint.h5 is written each epoch (default: {DEFAULT_CHECKPOINT_DIR})")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from this checkpoint (model options must match it)")
    train.add_argument("--seed", type=int, default=0, help="seed of the weights and minibatches")
    train.add_argument("--quiet", action="store_true", help="no progress bar or loss lines")

    sample = commands.add_parser(
        "sample", help="caption images, or judge sentences, with a trained checkpoint")
    sample.add_argument("checkpoint")
    sample.add_argument("--data-dir", help="COCO- or CoLA-layout data directory, as the "
                        "checkpoint's model needs (default: built-in data)")
    sample.add_argument("--split", choices=("train", "val"), default="val")
    sample.add_argument("--num", type=_positive_int, default=5, help="images / sentences")
    sample.add_argument("--beam-size", type=_positive_int, default=None,
                        help="beam search width (captioning)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the choice of rows")

    gradcheck = commands.add_parser("gradcheck", help="numeric gradient check of every layer")
    gradcheck.add_argument("--seed", type=int, default=0)

    commands.add_parser("bench", help="benchmarks (arguments go to fastrnn.bench)", add_help=False)
    return parser


def main(argv=None):
    """Entry point of the ``fastrnn`` console script; returns the exit status."""
    as_program = argv is None  # the console script or python -m fastrnn, not a library call
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from fastrnn import bench  # imported on use: only this subcommand needs it

        return bench.main(argv[1:])
    args = _build_parser().parse_args(argv)
    command = {"train": _train, "sample": _sample, "gradcheck": _gradcheck}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt as interrupt:
        if as_program:  # nothing is left to do but exit: another Ctrl-C changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        message = _interrupted_message(interrupt, argv) if args.command == "train" else "interrupted"
        print(f"fastrnn {args.command}: {message}", file=sys.stderr)
        if as_program:
            _exit_now(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, FloatingPointError) as err:
        # Missing or malformed data/checkpoint files, options that do not fit them, and
        # training that went non-finite: one line, no traceback.
        print(f"fastrnn {args.command}: error: {err}", file=sys.stderr)
        return 1


def _exit_now(status):
    """Exit without Python's teardown, after an interrupt.

    The teardown of a process that ran the kernels takes about a second (Numba and LLVM
    objects), and Python restores the default SIGINT action during it, so a second Ctrl-C
    then killed the process by the signal (status -2) instead of the 130 the first one
    promised.  Checkpoints are already on disk (fsynced); only the output streams need
    flushing.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def _interrupted_message(interrupt, argv):
    """Where a Ctrl-C'd command stopped and, for train, how to resume."""
    from fastrnn.training.core import TrainingInterrupted

    if not isinstance(interrupt, TrainingInterrupted):
        return "interrupted (no training iteration had run; no checkpoint was written)"
    lines = [f"interrupted after iteration {interrupt.iteration} of {interrupt.num_iterations} "
             f"({interrupt.epoch} of {interrupt.num_epochs} epochs complete)."]
    if interrupt.checkpoint is None:
        lines.append("No checkpoint was written yet (one is written at the end of every "
                     "epoch): nothing to resume.")
    else:
        path, epoch, iteration = interrupt.checkpoint
        lines.append(f"The last complete checkpoint is {path} (epoch {epoch}, iteration "
                     f"{iteration}). Resume with:")
        lines.append("  fastrnn " + shlex.join(_without_resume(argv) + ["--resume", path]))
    return "\n".join(lines)


def _without_resume(argv):
    """``argv`` without its --resume option (both ``--resume X`` and ``--resume=X``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return kept


def _load_data(data_dir, max_train=None, seed=0):
    from fastrnn.coco_utils import load_coco_data
    from fastrnn.datasets import ensure_builtin_coco

    if data_dir is None:
        try:
            data_dir = ensure_builtin_coco()
        except OSError:  # no writable cache directory: fall back to a temporary one
            data_dir = ensure_builtin_coco(os.path.join(tempfile.gettempdir(), "fastrnn-builtin"))
        print(f"data: built-in synthetic captions in {data_dir}")
    else:
        print(f"data: {data_dir}")
    return load_coco_data(data_dir, max_train=max_train, rng=seed)


# CaptioningRNN's parameters and their number of dimensions.
_MODEL_PARAMS = {"W_embed": 2, "W_proj": 2, "b_proj": 1, "Wx": 2, "Wh": 2, "b": 1, "W_vocab": 2,
                 "b_vocab": 1}


def _model_options(args, checkpoint, path):
    """cell_type, wordvec_dim, hidden_dim: the arguments (or defaults) for a new model; for a
    resumed one the checkpoint's, refusing an option given on the command line that differs."""
    given = {"cell_type": args.cell_type, "wordvec_dim": args.wordvec_dim,
             "hidden_dim": args.hidden_dim}
    if checkpoint is None:
        return {name: MODEL_DEFAULTS[name] if value is None else value
                for name, value in given.items()}
    if checkpoint["model_config"] is not None:  # version 3: the checkpoint says
        stored = {name: checkpoint["model_config"].get(name) for name in given}
    else:  # versions 1 and 2 recorded no configuration: read it off the weights' shapes
        stored = _options_from_shapes(checkpoint, path)
    _refuse_differing_options(given, stored, path)
    return stored


def _refuse_differing_options(given, stored, path):
    for name, value in given.items():
        if value is not None and value != stored[name]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {value} does not match the checkpoint being resumed, {path}, "
                             f"which has {name}={stored[name]}; leave {flag} out to use the "
                             "checkpoint's")


def _options_from_shapes(checkpoint, path):
    """A version 1 or 2 checkpoint's CaptioningRNN options, from its parameters' shapes."""
    params = checkpoint["params"]
    missing = [name for name in _MODEL_PARAMS if name not in params]
    if missing:
        raise ValueError(f"{path} is not a CaptioningRNN checkpoint: no parameter(s) {missing}")
    for name, ndim in _MODEL_PARAMS.items():
        if params[name].ndim != ndim:
            raise ValueError(f"{path}: parameter {name!r} should be {ndim}-D, got shape "
                             f"{params[name].shape}")
    hidden_dim = params["Wh"].shape[0]
    return {
        "cell_type": checkpoint["attrs"].get("cell_type") or (
            "lstm" if params["Wh"].shape[-1] == 4 * hidden_dim else "rnn"),
        "wordvec_dim": params["W_embed"].shape[-1],
        "hidden_dim": hidden_dim,
    }


def _model_from_checkpoint(checkpoint, data, path, options=None):
    """The CaptioningRNN a checkpoint holds, checked against the data's image features.

    Version 3 checkpoints record the model's kind and configuration, from which it is built;
    older ones are read as a CaptioningRNN shaped like their parameters (every parameter must
    have the shape such a model has; a ValueError names the file and the key)."""
    from fastrnn import classifiers
    from fastrnn.classifiers.rnn import CaptioningRNN

    params = checkpoint["params"]
    if checkpoint["model_config"] is not None:
        model = classifiers.from_checkpoint(checkpoint, path)
        if not isinstance(model, CaptioningRNN):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a captioning model")
        input_dim = model.params["W_proj"].shape[0]
    else:
        if options is None:
            options = _options_from_shapes(checkpoint, path)
        dtypes = {params[name].dtype.name for name in _MODEL_PARAMS}
        if len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
            raise ValueError(f"{path}: parameters should all be float32 or all float64, got {dtypes}")
        input_dim = params["W_proj"].shape[0]
        model = CaptioningRNN(data["word_to_idx"], input_dim=input_dim, dtype=dtypes.pop(), rng=0,
                              **options)
        for name, value in model.params.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{path}: parameter {name!r} has shape {params[name].shape}, a "
                                 f"{options['cell_type']} of these sizes and this vocabulary has "
                                 f"{value.shape}")
        for name in model.params:
            model.params[name] = params[name]
    if input_dim != data["train_features"].shape[1]:
        raise ValueError(f"{path} was trained on {input_dim}-D image features, these data have "
                         f"{data['train_features'].shape[1]}-D ones")
    return model


def _check_vocabulary(checkpoint, data, path):
    stored = checkpoint["json"].get("word_to_idx")
    if stored is not None and json.loads(stored) != data["word_to_idx"]:
        raise ValueError(f"{path} was trained on a different vocabulary than this data")


def _print_samples(bleu_scores, count):
    print("sample captions (validation images):")
    for reference, hypothesis in list(zip(bleu_scores["references"], bleu_scores["hypotheses"]))[:count]:
        print(f"  true:  {_strip(reference)}")
        print(f"  model: {_strip(hypothesis)}")


def _strip(caption):
    return " ".join(w for w in caption.split() if w not in ("<START>", "<END>"))


def _train(args):
    """Everything is checked (paths, checkpoint, data, options) before the first iteration;
    Ctrl-C is deferred to safe points (see :data:`fastrnn.training.core.deferred_sigint`)."""
    from fastrnn.training.checkpoint import check_checkpoint_dir, read_checkpoint
    from fastrnn.training.core import deferred_sigint

    start = time.perf_counter()
    with deferred_sigint:
        check_checkpoint_dir(args.checkpoint_dir)
        checkpoint = read_checkpoint(args.resume) if args.resume else None
        kind = _model_kind(args, checkpoint)
        for name in _ONLY_FOR[kind]:
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} is an option of the other model "
                                 f"(this run trains the {kind} model)")
        for name, value in TRAINING_DEFAULTS[kind].items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        train = _train_transformer if kind == "transformer" else _train_captioning
        report = train(args, checkpoint)
    report()
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


def _model_kind(args, checkpoint):
    """'captioning' or 'transformer': --model, else the resumed checkpoint's, else captioning."""
    if checkpoint is None:
        return args.model or "captioning"
    stored = checkpoint["attrs"].get("model_kind", "CaptioningRNN")  # versions 1, 2: captioning
    kinds = {cls: kind for kind, cls in MODEL_KINDS.items()}
    if stored not in kinds:
        raise ValueError(f"{args.resume} holds a {stored}, which fastrnn train does not train")
    if args.model is not None and args.model != kinds[stored]:
        raise ValueError(f"--model {args.model} does not match the checkpoint being resumed, "
                         f"{args.resume}, which holds a {stored}; leave --model out to use the "
                         "checkpoint's")
    return kinds[stored]


def _report_checkpoint(solver):
    if solver.checkpoint_path is not None and os.path.exists(solver.checkpoint_path):
        print(f"checkpoint: {solver.checkpoint_path}  (try: fastrnn sample {solver.checkpoint_path})")


def _run_training(solver, args):
    """``solver.train()`` with its time printed; raises TrainingInterrupted on a deferred Ctrl-C."""
    train_start = time.perf_counter()
    solver.train()
    if solver.loss_history:
        print(f"trained {solver.epoch} epochs ({solver.iteration} iterations) in "
              f"{time.perf_counter() - train_start:.1f} s; final training loss "
              f"{solver.loss_history[-1]:.3f}")


def _interrupted_if_requested(solver, args):
    """After the final evaluation: a Ctrl-C during it still reports how to resume."""
    from fastrnn.training.core import TrainingInterrupted, deferred_sigint

    if deferred_sigint.requested:  # training is complete; the report is not printed
        num_iterations = solver.num_epochs * solver._iterations_per_epoch()
        raise TrainingInterrupted(solver.iteration, num_iterations, solver.epoch, args.epochs,
                                  solver.last_checkpoint)


def _train_captioning(args, checkpoint):
    from fastrnn.captioning_solver import CaptioningSolver
    from fastrnn.classifiers.rnn import CaptioningRNN
    from fastrnn.metrics import evaluate_captions
    from fastrnn.training.core import deferred_sigint

    options = _model_options(args, checkpoint, args.resume)
    data = _load_data(args.data_dir, args.max_train, args.seed)
    deferred_sigint.check()
    if checkpoint is not None:
        _check_vocabulary(checkpoint, data, args.resume)
        model = _model_from_checkpoint(checkpoint, data, args.resume, options)
    else:
        model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                              dtype=np.float32, rng=args.seed, **options)
    num_iterations = args.epochs * max(data["train_captions"].shape[0] // args.batch_size, 1)
    solver = CaptioningSolver(model, data, update_rule="adam",
                              optim_config={"learning_rate": args.lr}, lr_decay=args.lr_decay,
                              batch_size=args.batch_size, num_epochs=args.epochs,
                              print_every=max(num_iterations // 10, 1), verbose=not args.quiet,
                              grad_clip=args.grad_clip, checkpoint_dir=args.checkpoint_dir,
                              rng=args.seed + 1)
    if checkpoint is not None:
        solver.restore_checkpoint(checkpoint, args.resume)
    print(f"model: {model.cell_type.upper()}, wordvec {model.params['W_embed'].shape[1]}, "
          f"hidden {model.params['Wh'].shape[0]}, vocabulary {len(data['word_to_idx'])}; "
          f"{data['train_captions'].shape[0]} train captions")
    untrained = CaptioningRNN(data["word_to_idx"], input_dim=model.params["W_proj"].shape[0],
                              wordvec_dim=model.params["W_embed"].shape[1],
                              hidden_dim=model.params["Wh"].shape[0], cell_type=model.cell_type,
                              rng=args.seed)
    before = evaluate_captions(untrained, data, "val", max_examples=args.num_val)
    deferred_sigint.check()
    _run_training(solver, args)
    after = evaluate_captions(model, data, "val", max_examples=args.num_val)
    _interrupted_if_requested(solver, args)

    def report():
        _print_samples(after, 5)
        print(f"validation BLEU-1 (the notebook's unigram BLEU): trained {after['bleu1']:.3f}, "
              f"untrained {before['bleu1']:.3f}")
        print(f"validation BLEU-4 (corpus):                      trained {after['bleu4']:.3f}, "
              f"untrained {before['bleu4']:.3f}")
        _report_checkpoint(solver)
    return report


def _load_cola(data_dir, max_train=None, seed=0):
    """The CoLA-layout data: ``data_dir``'s files, or the built-in corpus (made in memory)."""
    from fastrnn.cola_dataset import make_builtin_cola
    from fastrnn.cola_utils import load_cola_data

    if data_dir is None:
        data = make_builtin_cola(seed=0)
        print("data: the built-in acceptability corpus (word order decides the label)")
    else:
        data = load_cola_data(data_dir)
        print(f"data: {data_dir}")
    if max_train is not None:
        data["train_inxs"] = data["train_inxs"][:max_train]
        data["train_labels"] = data["train_labels"][:max_train]
    return data


def _cola_split(data, split):
    return data[f"{split}_inxs"], data[f"{split}_labels"]


def _judge(model, inxs, labels):
    """Accuracy and Matthews correlation of the model's labels for the sentences ``inxs``."""
    from fastrnn.metrics import matthews_corrcoef

    predicted = np.concatenate([model.predict(inxs[i:i + 256]) for i in range(0, len(inxs), 256)])
    return float(np.mean(predicted == labels)), matthews_corrcoef(labels, predicted)


def _print_judged(model, data, rows):
    """One line a sentence: the model's probability of 'grammatical', its verdict, the truth."""
    from fastrnn.cola_utils import decode_sentences

    inxs, labels = data["val_inxs"][rows], data["val_labels"][rows]
    probs = model.loss(inxs)[:, 0]
    for sentence, prob, label in zip(decode_sentences(inxs, data["ix_to_word"]), probs, labels):
        verdict = "grammatical" if prob >= 0.5 else "not grammatical"
        mark = "right" if (prob >= 0.5) == bool(label) else "WRONG"
        print(f"  p={prob:.3f} {verdict:<15} ({mark}, labelled {int(label)}): {sentence}")


def _train_transformer(args, checkpoint):
    from fastrnn import classifiers
    from fastrnn.classifiers.transformer import ClassificationTransformer
    from fastrnn.solver import Solver
    from fastrnn.training.core import deferred_sigint

    given = {"hidden_dim": args.hidden_dim, "num_heads": args.num_heads,
             "dim_feedforward": args.dim_feedforward, "dim_k": args.dim_k}
    data = _load_cola(args.data_dir, args.max_train, args.seed)
    deferred_sigint.check()
    if checkpoint is not None:
        _check_vocabulary(checkpoint, {"word_to_idx": data["word_to_ix"]}, args.resume)
        model = classifiers.from_checkpoint(checkpoint, args.resume)
        _refuse_differing_options(given, model.config(), args.resume)
    else:
        config = {name: TRANSFORMER_DEFAULTS[name] if value is None else value
                  for name, value in given.items()}
        config["dim_v"] = config["dim_q"] = config["dim_k"]
        model = ClassificationTransformer(data["word_to_ix"], **config,
                                          max_length=max(43, data["train_inxs"].shape[1]),
                                          seed=args.seed)
    splits = {"X_train": data["train_inxs"], "y_train": data["train_labels"],
              "X_val": data["val_inxs"], "y_val": data["val_labels"]}
    num_iterations = args.epochs * max(len(data["train_inxs"]) // args.batch_size, 1)
    solver = Solver(model, splits, update_rule="adam", optim_config={"learning_rate": args.lr},
                    lr_decay=args.lr_decay, batch_size=args.batch_size, num_epochs=args.epochs,
                    num_val_samples=args.num_val, print_every=max(num_iterations // 10, 1),
                    verbose=not args.quiet, grad_clip=args.grad_clip,
                    checkpoint_dir=args.checkpoint_dir, rng=args.seed + 1)
    if checkpoint is not None:
        solver.restore_checkpoint(checkpoint, args.resume)
    config = model.config()
    print(f"model: Transformer, hidden {config['hidden_dim']}, {config['num_heads']} heads of "
          f"{config['dim_k']}, feed-forward {config['dim_feedforward']}, vocabulary "
          f"{len(data['word_to_ix'])}; {len(data['train_inxs'])} train sentences")
    untrained = ClassificationTransformer(data["word_to_ix"], **{
        k: v for k, v in config.items() if k != "dtype"}, seed=args.seed)
    val = _cola_split(data, "val")
    before = _judge(untrained, *val)
    deferred_sigint.check()
    _run_training(solver, args)
    after = _judge(model, *val)
    _interrupted_if_requested(solver, args)

    def report():
        labels = data["val_labels"]
        rows = np.concatenate([np.flatnonzero(labels == 1)[:3], np.flatnonzero(labels == 0)[:3]])
        print("judged sentences (validation):")
        _print_judged(model, data, rows)
        print(f"validation accuracy ({len(labels)} sentences): trained {after[0]:.3f}, "
              f"untrained {before[0]:.3f}")
        print(f"validation Matthews correlation (CoLA's metric): trained {after[1]:.3f}, "
              f"untrained {before[1]:.3f}")
        if solver.val_acc_history:
            print("(the model holds the parameters of its best validation accuracy, "
                  f"{solver.best_val_acc:.3f}, as the classic Solver leaves it)")
        _report_checkpoint(solver)
    return report


def _sample(args):
    from fastrnn.training.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(args.checkpoint)
    if checkpoint["attrs"].get("model_kind") == "ClassificationTransformer":
        return _sample_transformer(args, checkpoint)
    from fastrnn.coco_utils import decode_captions
    from fastrnn.metrics import mean_bleu_unigram

    data = _load_data(args.data_dir)
    _check_vocabulary(checkpoint, data, args.checkpoint)
    model = _model_from_checkpoint(checkpoint, data, args.checkpoint)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(data[f"{args.split}_captions"].shape[0], size=args.num, replace=False)
    captions = data[f"{args.split}_captions"][rows]
    features = data[f"{args.split}_features"][data[f"{args.split}_image_idxs"][rows]]
    urls = data[f"{args.split}_urls"][data[f"{args.split}_image_idxs"][rows]]
    sampled = model.sample(features, max_length=captions.shape[1] - 1, beam_size=args.beam_size)
    references = decode_captions(captions, data["idx_to_word"])
    hypotheses = decode_captions(sampled, data["idx_to_word"])
    for url, reference, hypothesis in zip(urls, references, hypotheses):
        print(url)
        print(f"  true:  {_strip(reference)}")
        print(f"  model: {_strip(hypothesis)}")
    print(f"BLEU-1 of these {args.num}: {mean_bleu_unigram(references, hypotheses):.3f}")
    return 0


def _sample_transformer(args, checkpoint):
    """Judge ``args.num`` sentences of a split with the Transformer a checkpoint holds."""
    from fastrnn import classifiers

    if args.beam_size is not None:
        raise ValueError("--beam-size is for captioning checkpoints; this one holds a Transformer")
    data = _load_cola(args.data_dir)
    _check_vocabulary(checkpoint, {"word_to_idx": data["word_to_ix"]}, args.checkpoint)
    model = classifiers.from_checkpoint(checkpoint, args.checkpoint)
    inxs, labels = _cola_split(data, args.split)
    rows = np.random.default_rng(args.seed).choice(len(inxs), size=min(args.num, len(inxs)),
                                                   replace=False)
    view = {"val_inxs": inxs, "val_labels": labels, "ix_to_word": data["ix_to_word"]}
    _print_judged(model, view, rows)
    accuracy, mcc = _judge(model, inxs[rows], labels[rows])
    print(f"accuracy of these {len(rows)}: {accuracy:.3f}; Matthews correlation {mcc:.3f}")
    return 0


# ------------------------------------------------------------------------------- gradcheck
def _gradcheck(args):
    from fastrnn.gradcheck_cases import CASES, GRADCHECK_TOLERANCE, run_cases

    rows = run_cases(CASES, seed=args.seed)
    width = max(len(name) for name, _, _ in rows)
    arg_width = max(8, *(len(arg) for _, arg, _ in rows))
    print(f"{'function':<{width}}  {'argument':<{arg_width}}  {'rel. error':>10}  "
          f"ok (< {GRADCHECK_TOLERANCE:g})")
    failures = 0
    for name, arg, error in rows:
        ok = error < GRADCHECK_TOLERANCE
        failures += not ok
        print(f"{name:<{width}}  {arg:<{arg_width}}  {error:10.2e}  {'yes' if ok else 'NO'}")
    print(f"{len(rows) - failures} of {len(rows)} gradients agree (float64, centred differences)")
    return 1 if failures else 0
