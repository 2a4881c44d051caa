"""Training loop for captioning models, a drop-in for the classic ``CaptioningSolver``.

Beyond the classic solver (all of whose keyword arguments and behaviour are kept), it can
show a progress bar, clip the gradient norm, evaluate loss and BLEU on the validation split at
every epoch end, and write checkpoints to HDF5 from which a run resumes on exactly the
trajectory it would have followed uninterrupted.  The machinery (checked updates, Ctrl-C
between iterations, checkpoints) is :class:`fastrnn.training.core.BaseSolver`'s, shared with
the classic general :class:`fastrnn.solver.Solver`; the checkpoint format is described in
:mod:`fastrnn.training.checkpoint`.
"""
from fastrnn._limits import check_count
from fastrnn.coco_utils import sample_coco_minibatch
from fastrnn.training.checkpoint import (CheckpointError, atomic_write_h5, check_checkpoint_dir,
                                         read_checkpoint)
from fastrnn.training.core import (BaseSolver, NonFiniteError, TrainingInterrupted,
                                   clip_grad_norm, deferred_sigint)

# The names this module had before the shared core existed stay importable from here.
__all__ = ["CaptioningSolver", "clip_grad_norm", "read_checkpoint", "check_checkpoint_dir",
           "atomic_write_h5", "CheckpointError", "NonFiniteError", "TrainingInterrupted",
           "deferred_sigint"]


class CaptioningSolver(BaseSolver):
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

    kind = "CaptioningSolver"
    epoch_histories = ("val_loss_history", "val_bleu_history", "val_bleu4_history")

    def __init__(self, model, data, **kwargs):
        self.validate = kwargs.pop("validate", False)
        self.num_val = check_count("num_val", kwargs.pop("num_val", 500))
        super().__init__(model, data, **kwargs)

    def _num_train(self):
        return self.data["train_captions"].shape[0]

    def _minibatch(self):
        captions, features, _ = sample_coco_minibatch(self.data, batch_size=self.batch_size,
                                                      split="train", rng=self.rng)
        return features, captions

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

    def _evaluate(self, bar):
        if not self.validate:
            return
        metrics = self.validation_metrics()
        self.val_loss_history.append(metrics["loss"])
        self.val_bleu_history.append(metrics["bleu1"])
        self.val_bleu4_history.append(metrics["bleu4"])
        if self.verbose:
            bar.write("(Epoch %d / %d) val loss: %f, val BLEU-1: %.4f, BLEU-4: %.4f"
                      % (self.epoch, self.num_epochs, metrics["loss"], metrics["bleu1"],
                         metrics["bleu4"]))
