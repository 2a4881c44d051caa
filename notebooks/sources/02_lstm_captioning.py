"""Source of notebooks/02_lstm_captioning.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # Image captioning with an LSTM, on fastrnn
#
# **What this shows.** First, the classic course notebook "Image Captioning with LSTMs" with
# `cs231n` swapped for `fastrnn`: the LSTM step and sequence forward passes against the classic
# expected values, numeric gradient checks of the backward passes, the captioning model's loss
# against the classic expected loss, overfitting 50 captions and sampling from the overfit
# model. Then what the classic notebook leaves out: training an LSTM that captions *unseen*
# validation images well, its BLEU scores against an untrained model, and greedy decoding next
# to beam search.
#
# **Data.** The built-in synthetic dataset by default (the COCO layout; captions from a small
# grammar of colours, objects, actions and places, so the right caption is knowable from the
# features); set `FASTRNN_COCO_DIR` to run on the real COCO files (the last part then trains on
# a 10,000-caption subset, and its BLEU will be far lower: real captions are much harder).
# Runs in about a minute on two cores with the built-in data.

# %%
# As usual, a bit of setup
import os

import numpy as np
import matplotlib.pyplot as plt

from fastrnn.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from fastrnn.rnn_layers import *
from fastrnn.captioning_solver import CaptioningSolver
from fastrnn.classifiers.rnn import CaptioningRNN
from fastrnn.coco_utils import load_coco_data, sample_coco_minibatch, decode_captions
from fastrnn.datasets import ensure_builtin_coco
from fastrnn.metrics import evaluate_captions

plt.rcParams["figure.figsize"] = (6.0, 3.5)

# %%
builtin = not os.environ.get("FASTRNN_COCO_DIR")
base_dir = ensure_builtin_coco() if builtin else os.environ["FASTRNN_COCO_DIR"]
data = load_coco_data(base_dir, pca_features=True)
print("data from", base_dir)
for k, v in data.items():
    if isinstance(v, np.ndarray):
        print(k, type(v), v.shape, v.dtype)
    else:
        print(k, type(v), len(v))

# %% [markdown]
# # LSTM
# At each step the LSTM computes `a = x Wx + prev_h Wh + b` (shape `(N, 4H)`), splits it into
# `a_i, a_f, a_o, a_g` in that order, and
#
# `i = sigmoid(a_i)`, `f = sigmoid(a_f)`, `o = sigmoid(a_o)`, `g = tanh(a_g)`,
# `next_c = f * prev_c + i * g`, `next_h = o * tanh(next_c)`.
#
# ## LSTM: step forward
# You should see errors around 1e-8 or less.

# %%
N, D, H = 3, 4, 5
x = np.linspace(-0.4, 1.2, num=N * D).reshape(N, D)
prev_h = np.linspace(-0.3, 0.7, num=N * H).reshape(N, H)
prev_c = np.linspace(-0.4, 0.9, num=N * H).reshape(N, H)
Wx = np.linspace(-2.1, 1.3, num=4 * D * H).reshape(D, 4 * H)
Wh = np.linspace(-0.7, 2.2, num=4 * H * H).reshape(H, 4 * H)
b = np.linspace(0.3, 0.7, num=4 * H)

next_h, next_c, cache = lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)

expected_next_h = np.asarray([
    [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
    [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
    [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]])
expected_next_c = np.asarray([
    [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
    [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
    [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]])

print("next_h error: ", rel_error(expected_next_h, next_h))
print("next_c error: ", rel_error(expected_next_c, next_c))
assert max(rel_error(expected_next_h, next_h), rel_error(expected_next_c, next_c)) < 1e-7

# %% [markdown]
# ## LSTM: step backward
# Numeric gradient check through both outputs; errors around 1e-6 or less.

# %%
np.random.seed(231)

N, D, H = 4, 5, 6
x = np.random.randn(N, D)
prev_h = np.random.randn(N, H)
prev_c = np.random.randn(N, H)
Wx = np.random.randn(D, 4 * H)
Wh = np.random.randn(H, 4 * H)
b = np.random.randn(4 * H)

next_h, next_c, cache = lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)

dnext_h = np.random.randn(*next_h.shape)
dnext_c = np.random.randn(*next_c.shape)

# Each lambda ignores its argument: eval_numerical_gradient_array perturbs the array in place.
f_h = lambda _: lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)[0]
f_c = lambda _: lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)[1]


def num_grad(array):
    return (eval_numerical_gradient_array(f_h, array, dnext_h)
            + eval_numerical_gradient_array(f_c, array, dnext_c))


dx, dh, dc, dWx, dWh, db = lstm_step_backward(dnext_h, dnext_c, cache)
errors = {"dx": rel_error(num_grad(x), dx), "dh": rel_error(num_grad(prev_h), dh),
          "dc": rel_error(num_grad(prev_c), dc), "dWx": rel_error(num_grad(Wx), dWx),
          "dWh": rel_error(num_grad(Wh), dWh), "db": rel_error(num_grad(b), db)}
for name, error in errors.items():
    print(f"{name} error: ", error)
assert max(errors.values()) < 1e-6

# %% [markdown]
# ## LSTM: forward
# A whole sequence, with a zero initial cell state; you should see an error around 1e-7.

# %%
N, D, H, T = 2, 5, 4, 3
x = np.linspace(-0.4, 0.6, num=N * T * D).reshape(N, T, D)
h0 = np.linspace(-0.4, 0.8, num=N * H).reshape(N, H)
Wx = np.linspace(-0.2, 0.9, num=4 * D * H).reshape(D, 4 * H)
Wh = np.linspace(-0.3, 0.6, num=4 * H * H).reshape(H, 4 * H)
b = np.linspace(0.2, 0.7, num=4 * H)

h, cache = lstm_forward(x, h0, Wx, Wh, b)

expected_h = np.asarray([
    [[0.01764008, 0.01823233, 0.01882671, 0.0194232],
     [0.11287491, 0.12146228, 0.13018446, 0.13902939],
     [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
    [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
     [0.6704845, 0.69350089, 0.71486014, 0.7346449],
     [0.81733511, 0.83677871, 0.85403753, 0.86935314]]])

print("h error: ", rel_error(expected_h, h))
assert rel_error(expected_h, h) < 1e-6

# %% [markdown]
# ## LSTM: backward
# Errors around 1e-7 or less (`dWh` a little more: it sums over every step).

# %%
np.random.seed(231)

N, D, T, H = 2, 3, 10, 6

x = np.random.randn(N, T, D)
h0 = np.random.randn(N, H)
Wx = np.random.randn(D, 4 * H)
Wh = np.random.randn(H, 4 * H)
b = np.random.randn(4 * H)

out, cache = lstm_forward(x, h0, Wx, Wh, b)
dout = np.random.randn(*out.shape)
dx, dh0, dWx, dWh, db = lstm_backward(dout, cache)

f = lambda _: lstm_forward(x, h0, Wx, Wh, b)[0]
errors = {"dx": rel_error(eval_numerical_gradient_array(f, x, dout), dx),
          "dh0": rel_error(eval_numerical_gradient_array(f, h0, dout), dh0),
          "dWx": rel_error(eval_numerical_gradient_array(f, Wx, dout), dWx),
          "dWh": rel_error(eval_numerical_gradient_array(f, Wh, dout), dWh),
          "db": rel_error(eval_numerical_gradient_array(f, b, dout), db)}
for name, error in errors.items():
    print(f"{name} error: ", error)
assert max(errors.values()) < 1e-5

# %% [markdown]
# # LSTM captioning model
# The same `CaptioningRNN`, with `cell_type='lstm'`. You should see a difference below 1e-10.

# %%
N, D, W, H = 10, 20, 30, 40
word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
V = len(word_to_idx)
T = 13

model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H,
                      cell_type="lstm", dtype=np.float64)

# Set all model parameters to fixed values
for k, v in model.params.items():
    model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)

features = np.linspace(-0.5, 1.7, num=N * D).reshape(N, D)
captions = (np.arange(N * T) % V).reshape(N, T)

loss, grads = model.loss(features, captions)
expected_loss = 9.82445935443

print("loss: ", loss)
print("expected loss: ", expected_loss)
print("difference: ", abs(loss - expected_loss))
assert abs(loss - expected_loss) < 1e-10

# %% [markdown]
# # Overfit an LSTM captioning model
# The classic setting: 50 captions, hidden size 512, 100 Adam iterations. You should see
# losses below 0.5.

# %%
np.random.seed(231)

small_data = load_coco_data(base_dir, max_train=50)

small_lstm_model = CaptioningRNN(
    cell_type="lstm",
    word_to_idx=data["word_to_idx"],
    input_dim=data["train_features"].shape[1],
    hidden_dim=512,
    wordvec_dim=256,
    dtype=np.float32,
)

small_lstm_solver = CaptioningSolver(
    small_lstm_model, small_data,
    update_rule="adam",
    num_epochs=50,
    batch_size=25,
    optim_config={"learning_rate": 5e-3},
    lr_decay=0.995,
    verbose=True, print_every=10,
)

small_lstm_solver.train()

plt.plot(small_lstm_solver.loss_history)
plt.xlabel("Iteration")
plt.ylabel("Loss")
plt.title("Training loss history")
plt.show()

print("Final loss: ", small_lstm_solver.loss_history[-1])
assert small_lstm_solver.loss_history[-1] < 0.5

# %% [markdown]
# # LSTM test-time sampling
# The overfit model repeats its training captions and guesses on validation images.

# %%
for split in ["train", "val"]:
    gt_captions, features, urls = sample_coco_minibatch(small_data, split=split, batch_size=3)
    gt_captions = decode_captions(gt_captions, data["idx_to_word"])
    sample_captions = decode_captions(small_lstm_model.sample(features), data["idx_to_word"])
    for gt_caption, sample_caption in zip(gt_captions, sample_captions):
        print(f"{split:5s} sample: {sample_caption}\n      GT:     {gt_caption}")

# %% [markdown]
# # Beyond the classic notebook: a model that captions unseen images
#
# Now train on the whole built-in training split (6,000 captions of 2,000 images) for a few
# epochs, measuring the validation loss and BLEU at the end of every epoch
# (`validate=True`). BLEU is computed by NLTK, as the classic `evaluate_model` did: **BLEU-1**
# is the mean unigram BLEU of each sampled caption against that row's own caption; **BLEU-4**
# is corpus BLEU-4 against all captions of each image. An untrained model of the same shape
# is the baseline.

# %%
np.random.seed(231)
train_data = data if builtin else load_coco_data(base_dir, max_train=10000)

lstm_model = CaptioningRNN(
    cell_type="lstm",
    word_to_idx=data["word_to_idx"],
    input_dim=data["train_features"].shape[1],
    hidden_dim=128,
    wordvec_dim=64,
    dtype=np.float32,
)
untrained = evaluate_captions(lstm_model, train_data, "val", max_examples=500)

lstm_solver = CaptioningSolver(
    lstm_model, train_data,
    update_rule="adam",
    num_epochs=5,
    batch_size=100,
    optim_config={"learning_rate": 5e-3},
    lr_decay=0.9,
    validate=True, num_val=500,
    verbose=True, print_every=50,
)
lstm_solver.train()

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(lstm_solver.loss_history)
axes[0].set_xlabel("Iteration")
axes[0].set_title("Training loss")
epochs = np.arange(1, len(lstm_solver.val_bleu_history) + 1)
axes[1].plot(epochs, lstm_solver.val_bleu_history, "o-", label="BLEU-1")
axes[1].plot(epochs, lstm_solver.val_bleu4_history, "s-", label="BLEU-4")
axes[1].axhline(untrained["bleu1"], color="0.6", ls="--", label="untrained BLEU-1")
axes[1].set_xlabel("Epoch")
axes[1].set_xticks(epochs)
axes[1].set_title("Validation BLEU")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Greedy decoding vs beam search
#
# Greedy decoding takes the single most likely word at each step; beam search keeps the `k`
# most likely partial captions (by summed log-probability) and returns the best one that
# reached `<END>`. With `beam_size=1` it is greedy decoding.

# %%
greedy = evaluate_captions(lstm_model, train_data, "val", max_examples=500)
beam = evaluate_captions(lstm_model, train_data, "val", max_examples=500, beam_size=3)

print(f"{'500 validation captions':26s} {'BLEU-1':>8s} {'BLEU-4':>8s}")
for name, scores in (("untrained", untrained), ("trained, greedy", greedy), ("trained, beam 3", beam)):
    print(f"{name:26s} {scores['bleu1']:8.3f} {scores['bleu4']:8.3f}")

for i in range(6):
    print(f"\nGT:      {greedy['references'][i]}")
    print(f"greedy:  {greedy['hypotheses'][i]}")
    print(f"beam 3:  {beam['hypotheses'][i]}")

if builtin:  # the built-in grammar is learnable: demand that the model learned it
    assert greedy["bleu1"] > untrained["bleu1"] + 0.3, (greedy["bleu1"], untrained["bleu1"])

# %% [markdown]
# Where greedy decoding and beam search disagree on the built-in data, they usually choose
# different sentence templates of the grammar for the same content ("a red cow is jumping on a
# bench" / "on a bench a red cow is jumping"): the templates are about equally likely, and
# beam search scores whole sentences while greedy decoding commits to the first word. Both
# are right; BLEU against one reference caption rewards whichever template that caption used.
