"""A built-in synthetic acceptability corpus in the course's CoLA layout, where word order
decides the label.

CoLA cannot be downloaded here, so this writes a stand-in in exactly the layout that
:func:`fastrnn.cola_utils.load_cola_data` reads (7000 training and 1551 validation sentences of
43 tokens, [CLS] first, padded with [PAD]).  It is built so that the words of a sentence, as a
bag, say nothing about its label; only their order does:

* agreement (50%): "the dog near the cats runs today" / "the dog near the cats run today".  The
  verb must agree with the head noun (position 2) and not with the attractor noun; both nouns
  come from the same list and always differ in number, so every sentence holds one singular and
  one plural noun, and the verb's number alone says nothing.  (Measured while preparing the
  issue: an attractor from a different word list lets a bag-of-words classifier reach 0.74.)
* reflexives (20%): "the dogs with the man hurt themselves" / "... hurt himself", the same way.
* word order (30%): a grammatical sentence, or the same words in a scrambled order.

``variable_head=True`` puts 0-3 words of preamble in front ("yesterday", "i think that"), so
that the head noun's position varies: a harder split, reported separately.

Everything is drawn from ``np.random.default_rng(seed)``: the same seed writes the same files.
"""
import csv
import os

import numpy as np

from fastrnn.cola_utils import COLA_FILES, VOCAB_FILE

__all__ = ["make_builtin_cola", "write_builtin_cola", "MAX_LENGTH", "PAD", "CLS"]

MAX_LENGTH = 43
PAD, CLS = "[PAD]", "[CLS]"

NOUNS = (("dog", "dogs"), ("cat", "cats"), ("man", "men"), ("woman", "women"),
         ("child", "children"), ("teacher", "teachers"), ("bird", "birds"),
         ("farmer", "farmers"), ("student", "students"), ("doctor", "doctors"),
         ("king", "kings"), ("girl", "girls"), ("boy", "boys"), ("horse", "horses"))
VERBS = (("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("walks", "walk"),
         ("waits", "wait"), ("laughs", "laugh"), ("is", "are"), ("was", "were"),
         ("has left", "have left"))
PREPOSITIONS = ("near", "behind", "with", "beside", "like", "above", "of")
REFLEXIVE_VERBS = ("hurt", "saw", "washed", "praised", "blamed")
REFLEXIVES = ("himself", "themselves")
ENDINGS = ("", "today", "again", "in the garden", "every day", "at night", "quietly")
PREAMBLES = ("", "yesterday", "i think that", "we saw that", "maybe", "she said that")
DETERMINERS = ("the", "a")  # "a" only before a singular noun


def _vocabulary():
    words = set()
    for group in (NOUNS, VERBS):
        for pair in group:
            for phrase in pair:
                words.update(phrase.split())
    for group in (PREPOSITIONS, REFLEXIVE_VERBS, REFLEXIVES, ENDINGS, PREAMBLES, DETERMINERS):
        for phrase in group:
            words.update(phrase.split())
    ix_to_word = [PAD, CLS] + sorted(words)
    return {w: i for i, w in enumerate(ix_to_word)}


def _choice(rng, options):
    return options[int(rng.integers(len(options)))]


def _determiner(rng, plural):
    return "the" if plural else _choice(rng, DETERMINERS)


def _agreement(rng, good):
    head, attractor = rng.choice(len(NOUNS), 2)
    plural = bool(rng.integers(2))
    verb = _choice(rng, VERBS)[int(plural) if good else int(not plural)]
    words = [_determiner(rng, plural), NOUNS[head][int(plural)], _choice(rng, PREPOSITIONS),
             _determiner(rng, not plural), NOUNS[attractor][int(not plural)], verb,
             _choice(rng, ENDINGS)]
    return " ".join(w for w in words if w)


def _reflexive(rng, good):
    head, attractor = rng.choice(len(NOUNS), 2)
    plural = bool(rng.integers(2))
    pronoun = REFLEXIVES[int(plural) if good else int(not plural)]
    words = [_determiner(rng, plural), NOUNS[head][int(plural)], _choice(rng, PREPOSITIONS),
             _determiner(rng, not plural), NOUNS[attractor][int(not plural)],
             _choice(rng, REFLEXIVE_VERBS), pronoun]
    return " ".join(words)


def _word_order(rng, good):
    plural = bool(rng.integers(2))
    noun = NOUNS[int(rng.integers(len(NOUNS)))][int(plural)]
    words = [_determiner(rng, plural), noun, _choice(rng, VERBS)[int(plural)],
             _choice(rng, ENDINGS)]
    words = " ".join(w for w in words if w).split()
    if not good:
        original = list(words)
        while words == original:
            words = [words[i] for i in rng.permutation(len(words))]
    return " ".join(words)


KINDS = ((_agreement, 0.5), (_reflexive, 0.2), (_word_order, 0.3))


def _sentences(rng, count, variable_head):
    generators, weights = zip(*KINDS)
    kinds = rng.choice(len(generators), size=count, p=weights)
    labels = rng.integers(0, 2, size=count)
    sentences = []
    for kind, label in zip(kinds, labels):
        sentence = generators[kind](rng, bool(label))
        if variable_head:
            preamble = _choice(rng, PREAMBLES)
            sentence = f"{preamble} {sentence}".strip()
        sentences.append(sentence)
    return sentences, labels.astype(np.int64)


def _encode(sentences, word_to_ix, max_length):
    inxs = np.full((len(sentences), max_length), word_to_ix[PAD], dtype=np.int64)
    for n, sentence in enumerate(sentences):
        ids = [word_to_ix[CLS]] + [word_to_ix[w] for w in sentence.split()]
        inxs[n, :len(ids)] = ids
    return inxs


def make_builtin_cola(seed=0, num_train=7000, num_val=1551, max_length=MAX_LENGTH,
                      variable_head=False):
    """The corpus as :func:`fastrnn.cola_utils.load_cola_data` returns it, plus the sentences.

    Returns
    -------
    dict: train_inxs, val_inxs (N, max_length) int64; train_labels, val_labels (N,) int64;
    word_to_ix, ix_to_word; train_sentences, val_sentences (lists of str).
    """
    rng = np.random.default_rng(seed)
    word_to_ix = _vocabulary()
    data = {}
    sentences = {}
    for split, count in (("train", num_train), ("val", num_val)):
        sentences[split], data[f"{split}_labels"] = _sentences(rng, count, variable_head)
        data[f"{split}_inxs"] = _encode(sentences[split], word_to_ix, max_length)
    # the loader's key order: inxs, then labels
    ordered = {k: data[k] for k in COLA_FILES}
    ordered["word_to_ix"] = word_to_ix
    ordered["ix_to_word"] = {i: w for w, i in word_to_ix.items()}
    ordered["train_sentences"], ordered["val_sentences"] = sentences["train"], sentences["val"]
    return ordered


def write_builtin_cola(base_dir, seed=0, **kwargs):
    """Write :func:`make_builtin_cola` in the course's file layout into ``base_dir``; returns it."""
    data = make_builtin_cola(seed=seed, **kwargs)
    os.makedirs(base_dir, exist_ok=True)
    for key, name in COLA_FILES.items():
        np.save(os.path.join(base_dir, name), data[key])
    with open(os.path.join(base_dir, VOCAB_FILE), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for word, index in data["word_to_ix"].items():
            writer.writerow([word, index])
    return base_dir
