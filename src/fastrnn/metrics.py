"""BLEU scores for generated captions, computed by NLTK (no hand-rolled BLEU).

* :func:`bleu_unigram` is the score of the classic notebook's ``BLEU_score``/``evaluate_model``:
  ``nltk.translate.bleu_score.sentence_bleu([reference], hypothesis, weights=[1])`` on
  space-split words, with every token containing <START>, <END> or <UNK> dropped (and <NULL>,
  which ``decode_captions`` already skips).
* :func:`corpus_bleu4` is standard corpus-level BLEU-4 (NLTK ``corpus_bleu``, uniform weights,
  no smoothing) against all reference captions of each image.
* :func:`evaluate_captions` samples captions for the first rows of a split and reports both.
* :func:`matthews_corrcoef` is the Matthews correlation of predicted labels (CoLA's metric).
"""
import warnings

import numpy as np

__all__ = ["bleu_unigram", "mean_bleu_unigram", "corpus_bleu4", "evaluate_captions",
           "matthews_corrcoef"]

IGNORED_TOKENS = ("<START>", "<END>", "<UNK>", "<NULL>")


def _words(caption):
    return [w for w in caption.split(" ") if w and not any(tok in w for tok in IGNORED_TOKENS)]


def bleu_unigram(reference, hypothesis):
    """Unigram BLEU of one caption string against one reference string, in [0, 1]."""
    from nltk.translate.bleu_score import sentence_bleu  # imported on use: nltk is slow to import

    return float(sentence_bleu([_words(reference)], _words(hypothesis), weights=[1]))


def mean_bleu_unigram(references, hypotheses):
    """Mean of :func:`bleu_unigram` over pairs of caption strings (the notebook's score)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"references and hypotheses differ in length: "
                         f"{len(references)} != {len(hypotheses)}")
    if not hypotheses:
        raise ValueError("hypotheses is empty")
    return float(np.mean([bleu_unigram(r, h) for r, h in zip(references, hypotheses)]))


def corpus_bleu4(references, hypotheses):
    """Corpus BLEU-4.

    Parameters
    ----------
    references : list (N,) of lists of caption strings (all references of each hypothesis)
    hypotheses : list (N,) of caption strings

    Returns
    -------
    float in [0, 1]; 0 (NLTK returns ~1e-232) when some n-gram order (n <= 4) has no match.
    """
    from nltk.translate.bleu_score import corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(f"references and hypotheses differ in length: "
                         f"{len(references)} != {len(hypotheses)}")
    refs = [[_words(r) for r in group] for group in references]
    hyps = [_words(h) for h in hypotheses]
    with warnings.catch_warnings():
        # NLTK warns, then returns 0, when an n-gram order has no match: 0 is the right answer.
        warnings.filterwarnings("ignore", message=r"(?s).*contains 0 counts of", category=UserWarning)
        return float(corpus_bleu(refs, hyps))


def evaluate_captions(model, data, split="val", max_examples=1000, beam_size=None, batch_size=500):
    """Caption the images of the first ``max_examples`` caption rows of ``split`` and score them.

    Deterministic (the first rows, no random draw), so evaluating never disturbs a training
    run's random stream.

    Parameters
    ----------
    model : object with ``sample(features, max_length)`` (and ``beam_size=`` if given)
    data : dict from :func:`fastrnn.coco_utils.load_coco_data`
    max_examples : int
    beam_size : int, optional
        Passed to ``model.sample``; default greedy sampling.

    Returns
    -------
    dict with ``bleu1`` (mean unigram BLEU against the row's own caption, as the notebook),
    ``bleu4`` (corpus BLEU-4 against all captions of the image), ``references`` and
    ``hypotheses`` (caption strings) and ``image_idxs``.
    """
    from fastrnn.coco_utils import decode_captions

    captions = data[f"{split}_captions"][:max_examples]
    image_idxs = data[f"{split}_image_idxs"][:max_examples]
    features = data[f"{split}_features"]
    idx_to_word = data["idx_to_word"]
    max_length = data[f"{split}_captions"].shape[1] - 1
    sampled = []
    for start in range(0, captions.shape[0], batch_size):
        batch = features[image_idxs[start:start + batch_size]]
        kwargs = {} if beam_size is None else {"beam_size": beam_size}
        sampled.append(model.sample(batch, max_length=max_length, **kwargs))
    hypotheses = decode_captions(np.concatenate(sampled), idx_to_word)
    references = decode_captions(captions, idx_to_word)
    all_refs = {}
    same_image = np.isin(data[f"{split}_image_idxs"], image_idxs)
    for caption, image in zip(decode_captions(data[f"{split}_captions"][same_image], idx_to_word),
                              data[f"{split}_image_idxs"][same_image]):
        all_refs.setdefault(int(image), []).append(caption)
    return {
        "bleu1": mean_bleu_unigram(references, hypotheses),
        "bleu4": corpus_bleu4([all_refs[int(i)] for i in image_idxs], hypotheses),
        "references": references,
        "hypotheses": hypotheses,
        "image_idxs": image_idxs,
    }


def matthews_corrcoef(y_true, y_pred):
    """Matthews correlation coefficient of predicted labels, in [-1, 1] (CoLA's official metric).

    For two classes, (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); for more, Gorodkin's
    generalisation from the confusion matrix (what scikit-learn computes).  0 where it is
    undefined (every label or every prediction one class).

    Parameters
    ----------
    y_true, y_pred : (N,) integer labels
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} != {y_pred.size}")
    classes, encoded = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    k = classes.size
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (encoded[:y_true.size], encoded[y_true.size:]), 1)
    true_counts = confusion.sum(axis=1)
    pred_counts = confusion.sum(axis=0)
    n = confusion.sum()
    covariance = np.trace(confusion) * n - true_counts @ pred_counts
    denominator = np.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return float(covariance / denominator) if denominator > 0 else 0.0
