"""Source of notebooks/06_transformer.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # The problem set's Transformer, in NumPy + Numba
#
# **What this shows.**
#
# 1. The course's five deliverable checks (embedding, attention, feed-forward, final layer,
#    forward), with fastrnn's `ClassificationTransformer` in place of the PyTorch module: the
#    differences are printed as the course prints them, against the course's PyTorch module
#    when torch is installed (it is optional; fastrnn never imports it).
# 2. Training on the built-in acceptability corpus (word order decides the label), with
#    validation accuracy and Matthews correlation per epoch (the classic `Solver`), next to a
#    bag-of-words baseline that stays at chance.
#
# It runs in about a minute on two cores (the training dominates).
# 3. The attention of token 0 ([CLS]) over one sentence, as a heatmap.

# %%
import numpy as np
import matplotlib.pyplot as plt

from fastrnn.solver import Solver
from fastrnn.classifiers.transformer import ClassificationTransformer
from fastrnn.cola_dataset import make_builtin_cola
from fastrnn.cola_utils import decode_sentences

data = make_builtin_cola(seed=0)
word_to_ix = data["word_to_ix"]
print(len(word_to_ix), "words;", data["train_inxs"].shape, data["val_inxs"].shape)
for sentence, label in zip(data["train_sentences"][:4], data["train_labels"][:4]):
    print(label, sentence)

# %% [markdown]
# ## 1. The five deliverables
#
# The course checks each method's output against saved expected values; here the expected
# values come from the course's own PyTorch module (rebuilt in `fastrnn.bench.transformer`)
# with its weights loaded into fastrnn, when torch is installed. Without torch, the pruned
# `forward` (token 0 only, no keys or values formed) is checked against the full chain of the
# course's methods.

# %%
model = ClassificationTransformer(word_to_ix, dtype=np.float64)
inputs = data["train_inxs"][:8]
ours = {"embed": model.embed(inputs)}
try:
    import torch
    from fastrnn.bench.transformer import course_module
except ImportError:
    torch = None

if torch is not None:
    torch.manual_seed(0)
    course = course_module(torch, vocab_size=len(word_to_ix)).double()
    model.load_state_dict(course.state_dict())   # tensors go in as they are
    with torch.no_grad():
        t = torch.from_numpy(inputs)
        expected = {"embed": course.embed(t)}
        expected["multi_head_attention"] = course.multi_head_attention(expected["embed"])
        expected["feedforward_layer"] = course.feedforward_layer(expected["multi_head_attention"])
        expected["final_layer"] = course.final_layer(expected["feedforward_layer"])
        expected["forward"] = course(t)
    expected = {name: value.numpy() for name, value in expected.items()}
    ours = {"embed": model.embed(inputs),
            "multi_head_attention": model.multi_head_attention(expected["embed"]),
            "feedforward_layer": model.feedforward_layer(expected["multi_head_attention"]),
            "final_layer": model.final_layer(expected["feedforward_layer"]),
            "forward": model.forward(inputs)}
    for name in ours:
        print(f"{name}: Difference: {np.sum(np.abs(ours[name] - expected[name])):.3g}")
else:
    full = model.final_layer(model.feedforward_layer(model.multi_head_attention(
        model.embed(inputs))))
    print("torch is not installed; forward (pruned) vs the full chain: Difference:",
          f"{np.sum(np.abs(model.forward(inputs) - full)):.3g}")

# %% [markdown]
# ## 2. Training, and a bag-of-words baseline

# %%
def bag_of_words(inxs):
    counts = np.zeros((len(inxs), len(word_to_ix)))
    np.add.at(counts, (np.repeat(np.arange(len(inxs)), inxs.shape[1]), inxs.ravel()), 1)
    counts[:, word_to_ix["[PAD]"]] = 0
    return counts


X, X_val = bag_of_words(data["train_inxs"]), bag_of_words(data["val_inxs"])
w, b = np.zeros(X.shape[1]), 0.0
for _ in range(600):
    p = 1 / (1 + np.exp(-(X @ w + b)))
    w -= X.T @ (p - data["train_labels"]) / len(p)
    b -= np.mean(p - data["train_labels"])
print("bag-of-words validation accuracy", np.mean((X_val @ w + b > 0) == data["val_labels"]))

# %%
model = ClassificationTransformer(word_to_ix)
solver = Solver(model, {"X_train": data["train_inxs"], "y_train": data["train_labels"],
                        "X_val": data["val_inxs"], "y_val": data["val_labels"]},
                update_rule="adam", optim_config={"learning_rate": 5e-4}, batch_size=64,
                num_epochs=4, print_every=100, rng=0)
solver.train()   # the classic Solver's lines, plus the validation Matthews correlation

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.plot(solver.loss_history)
left.set(xlabel="iteration", ylabel="training loss")
right.plot(solver.val_acc_history, marker="o", label="accuracy")
right.plot(solver.val_mcc_history, marker="s", label="Matthews correlation")
right.set(xlabel="epoch (0: after the first iteration)", ylabel="validation")
right.legend()
plt.show()

# %% [markdown]
# ## 3. Where token 0 looks
#
# The attention of the [CLS] query over one validation sentence, per head: to decide
# agreement the model has to read the head noun (position 2) and the verb.

# %%
sentence = data["val_inxs"][:1]
length = int(np.sum(sentence != word_to_ix["[PAD]"]))
weights = model.attention_weights(sentence)        # (1, heads, T, T)
words = ["[CLS]"] + decode_sentences(sentence[0], model.ix_to_word).split()
fig, ax = plt.subplots(figsize=(8, 2))
ax.imshow(weights[0, :, 0, :length], cmap="viridis", aspect="auto")
ax.set_xticks(range(length), words, rotation=45, ha="right")
ax.set_yticks(range(model.num_heads), [f"head {h + 1}" for h in range(model.num_heads)])
ax.set_title(f"attention of [CLS]; label {data['val_labels'][0]}, "
             f"p(acceptable) = {model.forward(sentence)[0, 0]:.2f}")
plt.show()
