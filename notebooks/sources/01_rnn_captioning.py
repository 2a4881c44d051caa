"""Source of notebooks/01_rnn_captioning.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # Image captioning with a vanilla RNN, on fastrnn
#
# **What this shows.** The classic course notebook "Image Captioning with RNNs", cell for cell,
# with `cs231n` swapped for `fastrnn`: each layer's forward pass against the classic expected
# values, numeric gradient checks of every backward pass, the captioning model's loss against
# the classic expected loss, overfitting a small training set (loss plot), and test-time
# sampling on training and validation images. The checks are asserted, so the notebook fails
# loudly if fastrnn ever stops being a drop-in.
#
# **Data.** By default the built-in synthetic dataset (`fastrnn.datasets`, the COCO file layout,
# captions from a small grammar whose words really depend on the image features; written once
# to your cache directory in about a second). Set `FASTRNN_COCO_DIR` to a directory with the
# real COCO captioning files to run on those instead. Runs in well under a minute on two cores.

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

plt.rcParams["figure.figsize"] = (6.0, 3.5)

# %% [markdown]
# ## Load the data
# `load_coco_data` reads the classic files (HDF5 features and captions, a JSON vocabulary, URL
# lists) from `base_dir`. Captions are integer arrays: `<START>` and `<END>` around each
# caption, `<NULL>` padding after it (never scored), `<UNK>` for rare words.

# %%
base_dir = os.environ.get("FASTRNN_COCO_DIR") or ensure_builtin_coco()
data = load_coco_data(base_dir, pca_features=True)
print("data from", base_dir)
for k, v in data.items():
    if isinstance(v, np.ndarray):
        print(k, type(v), v.shape, v.dtype)
    else:
        print(k, type(v), len(v))

# %% [markdown]
# ## Look at the data
# The classic notebook downloads each image from its URL; the built-in images exist only as
# feature vectors, so we print the captions (and URLs) of a random minibatch.

# %%
np.random.seed(231)
captions, features, urls = sample_coco_minibatch(data, batch_size=3)
for caption, url in zip(captions, urls):
    print(decode_captions(caption, data["idx_to_word"]), "  ", url)

# %% [markdown]
# # Vanilla RNN: step forward
# `next_h = tanh(x Wx + prev_h Wh + b)`. You should see an error around 1e-8.

# %%
N, D, H = 3, 10, 4

x = np.linspace(-0.4, 0.7, num=N * D).reshape(N, D)
prev_h = np.linspace(-0.2, 0.5, num=N * H).reshape(N, H)
Wx = np.linspace(-0.1, 0.9, num=D * H).reshape(D, H)
Wh = np.linspace(-0.3, 0.7, num=H * H).reshape(H, H)
b = np.linspace(-0.2, 0.4, num=H)

next_h, _ = rnn_step_forward(x, prev_h, Wx, Wh, b)
expected_next_h = np.asarray([
    [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
    [0.66854692, 0.79562378, 0.87755553, 0.92795967],
    [0.97934501, 0.99144213, 0.99646691, 0.99854353]])

print("next_h error: ", rel_error(expected_next_h, next_h))
assert rel_error(expected_next_h, next_h) < 1e-7

# %% [markdown]
# # Vanilla RNN: step backward
# Numeric gradient check; you should see errors around 1e-8 or less.

# %%
np.random.seed(231)
N, D, H = 4, 5, 6
x = np.random.randn(N, D)
h = np.random.randn(N, H)
Wx = np.random.randn(D, H)
Wh = np.random.randn(H, H)
b = np.random.randn(H)

out, cache = rnn_step_forward(x, h, Wx, Wh, b)
dnext_h = np.random.randn(*out.shape)

fx = lambda x: rnn_step_forward(x, h, Wx, Wh, b)[0]
fh = lambda prev_h: rnn_step_forward(x, h, Wx, Wh, b)[0]
fWx = lambda Wx: rnn_step_forward(x, h, Wx, Wh, b)[0]
fWh = lambda Wh: rnn_step_forward(x, h, Wx, Wh, b)[0]
fb = lambda b: rnn_step_forward(x, h, Wx, Wh, b)[0]

dx_num = eval_numerical_gradient_array(fx, x, dnext_h)
dprev_h_num = eval_numerical_gradient_array(fh, h, dnext_h)
dWx_num = eval_numerical_gradient_array(fWx, Wx, dnext_h)
dWh_num = eval_numerical_gradient_array(fWh, Wh, dnext_h)
db_num = eval_numerical_gradient_array(fb, b, dnext_h)

dx, dprev_h, dWx, dWh, db = rnn_step_backward(dnext_h, cache)

errors = {"dx": rel_error(dx_num, dx), "dprev_h": rel_error(dprev_h_num, dprev_h),
          "dWx": rel_error(dWx_num, dWx), "dWh": rel_error(dWh_num, dWh), "db": rel_error(db_num, db)}
for name, error in errors.items():
    print(f"{name} error: ", error)
assert max(errors.values()) < 1e-7

# %% [markdown]
# # Vanilla RNN: forward
# A whole sequence; you should see an error around 1e-7.

# %%
N, T, D, H = 2, 3, 4, 5

x = np.linspace(-0.1, 0.3, num=N * T * D).reshape(N, T, D)
h0 = np.linspace(-0.3, 0.1, num=N * H).reshape(N, H)
Wx = np.linspace(-0.2, 0.4, num=D * H).reshape(D, H)
Wh = np.linspace(-0.4, 0.1, num=H * H).reshape(H, H)
b = np.linspace(-0.7, 0.1, num=H)

h, _ = rnn_forward(x, h0, Wx, Wh, b)
expected_h = np.asarray([
    [[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
     [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
     [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
    [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
     [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
     [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]])
print("h error: ", rel_error(expected_h, h))
assert rel_error(expected_h, h) < 1e-6

# %% [markdown]
# # Vanilla RNN: backward
# Backpropagation through time over the whole sequence, checked numerically.

# %%
np.random.seed(231)
N, D, T, H = 2, 3, 10, 5

x = np.random.randn(N, T, D)
h0 = np.random.randn(N, H)
Wx = np.random.randn(D, H)
Wh = np.random.randn(H, H)
b = np.random.randn(H)

out, cache = rnn_forward(x, h0, Wx, Wh, b)
dout = np.random.randn(*out.shape)
dx, dh0, dWx, dWh, db = rnn_backward(dout, cache)

fx = lambda x: rnn_forward(x, h0, Wx, Wh, b)[0]
fh0 = lambda h0: rnn_forward(x, h0, Wx, Wh, b)[0]
fWx = lambda Wx: rnn_forward(x, h0, Wx, Wh, b)[0]
fWh = lambda Wh: rnn_forward(x, h0, Wx, Wh, b)[0]
fb = lambda b: rnn_forward(x, h0, Wx, Wh, b)[0]

errors = {
    "dx": rel_error(eval_numerical_gradient_array(fx, x, dout), dx),
    "dh0": rel_error(eval_numerical_gradient_array(fh0, h0, dout), dh0),
    "dWx": rel_error(eval_numerical_gradient_array(fWx, Wx, dout), dWx),
    "dWh": rel_error(eval_numerical_gradient_array(fWh, Wh, dout), dWh),
    "db": rel_error(eval_numerical_gradient_array(fb, b, dout), db),
}
for name, error in errors.items():
    print(f"{name} error: ", error)
assert max(errors.values()) < 1e-6

# %% [markdown]
# # Word embedding: forward
# Each word index selects a row of `W`; you should see an error around 1e-8.

# %%
N, T, V, D = 2, 4, 5, 3

x = np.asarray([[0, 3, 1, 2], [2, 1, 0, 3]])
W = np.linspace(0, 1, num=V * D).reshape(V, D)

out, _ = word_embedding_forward(x, W)
expected_out = np.asarray([
    [[0., 0.07142857, 0.14285714],
     [0.64285714, 0.71428571, 0.78571429],
     [0.21428571, 0.28571429, 0.35714286],
     [0.42857143, 0.5, 0.57142857]],
    [[0.42857143, 0.5, 0.57142857],
     [0.21428571, 0.28571429, 0.35714286],
     [0., 0.07142857, 0.14285714],
     [0.64285714, 0.71428571, 0.78571429]]])
print("out error: ", rel_error(expected_out, out))
assert rel_error(expected_out, out) < 1e-7

# %% [markdown]
# # Word embedding: backward
# Repeated words accumulate their gradients; you should see an error below 1e-11.

# %%
np.random.seed(231)
N, T, V, D = 50, 3, 5, 6
x = np.random.randint(V, size=(N, T))
W = np.random.randn(V, D)

out, cache = word_embedding_forward(x, W)
dout = np.random.randn(*out.shape)
dW = word_embedding_backward(dout, cache)

f = lambda W: word_embedding_forward(x, W)[0]
dW_num = eval_numerical_gradient_array(f, W, dout)
print("dW error: ", rel_error(dW, dW_num))
assert rel_error(dW, dW_num) < 1e-9

# %% [markdown]
# # Temporal affine layer
# The same affine map at every time step, from hidden states to vocabulary scores.

# %%
np.random.seed(231)
N, T, D, M = 2, 3, 4, 5
x = np.random.randn(N, T, D)
w = np.random.randn(D, M)
b = np.random.randn(M)

out, cache = temporal_affine_forward(x, w, b)
dout = np.random.randn(*out.shape)

fx = lambda x: temporal_affine_forward(x, w, b)[0]
fw = lambda w: temporal_affine_forward(x, w, b)[0]
fb = lambda b: temporal_affine_forward(x, w, b)[0]

dx, dw, db = temporal_affine_backward(dout, cache)
errors = {"dx": rel_error(eval_numerical_gradient_array(fx, x, dout), dx),
          "dw": rel_error(eval_numerical_gradient_array(fw, w, dout), dw),
          "db": rel_error(eval_numerical_gradient_array(fb, b, dout), db)}
for name, error in errors.items():
    print(f"{name} error: ", error)
assert max(errors.values()) < 1e-8

# %% [markdown]
# # Temporal softmax loss
# Softmax cross-entropy at every step, masked where the target is `<NULL>`, summed over time
# and divided by the batch size. Sanity check: with small random scores over 10 classes the
# loss is about `T * ln(10)`: 2.3 for T = 1, 23 for T = 10, 2.3 again with 90% of it masked.

# %%
def check_loss(N, T, V, p):
    x = 0.001 * np.random.randn(N, T, V)
    y = np.random.randint(V, size=(N, T))
    mask = np.random.rand(N, T) <= p
    return temporal_softmax_loss(x, y, mask)[0]


np.random.seed(231)
sanity = [check_loss(100, 1, 10, 1.0), check_loss(100, 10, 10, 1.0), check_loss(5000, 10, 10, 0.1)]
print(sanity)
assert np.allclose(sanity, [np.log(10), 10 * np.log(10), np.log(10)], rtol=0.05)

# Gradient check of the loss
N, T, V = 7, 8, 9
x = np.random.randn(N, T, V)
y = np.random.randint(V, size=(N, T))
mask = np.random.rand(N, T) > 0.5

loss, dx = temporal_softmax_loss(x, y, mask, verbose=False)
dx_num = eval_numerical_gradient(lambda x: temporal_softmax_loss(x, y, mask)[0], x, verbose=False)
print("dx error: ", rel_error(dx, dx_num))
assert rel_error(dx, dx_num) < 1e-7

# %% [markdown]
# # RNN for image captioning
# `CaptioningRNN` chains the layers: image features -> affine -> `h0`; caption words ->
# embedding -> RNN -> temporal affine -> temporal softmax loss. With every parameter set to
# fixed values the loss must match the classic expected loss to about 1e-10.

# %%
N, D, W, H = 10, 20, 30, 40
word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
V = len(word_to_idx)
T = 13

model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H,
                      cell_type="rnn", dtype=np.float64)

# Set all model parameters to fixed values
for k, v in model.params.items():
    model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)

features = np.linspace(-1.5, 0.3, num=(N * D)).reshape(N, D)
captions = (np.arange(N * T) % V).reshape(N, T)

loss, grads = model.loss(features, captions)
expected_loss = 9.83235591003

print("loss: ", loss)
print("expected loss: ", expected_loss)
print("difference: ", abs(loss - expected_loss))
assert abs(loss - expected_loss) < 1e-10

# %% [markdown]
# Numeric gradient check of the whole model; you should see errors around 5e-6 or less.

# %%
np.random.seed(231)

batch_size = 2
timesteps = 3
input_dim = 4
wordvec_dim = 5
hidden_dim = 6
word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
vocab_size = len(word_to_idx)

captions = np.random.randint(vocab_size, size=(batch_size, timesteps))
features = np.random.randn(batch_size, input_dim)

model = CaptioningRNN(word_to_idx, input_dim=input_dim, wordvec_dim=wordvec_dim,
                      hidden_dim=hidden_dim, cell_type="rnn", dtype=np.float64)

loss, grads = model.loss(features, captions)

for param_name in sorted(grads):
    f = lambda _: model.loss(features, captions)[0]
    param_grad_num = eval_numerical_gradient(f, model.params[param_name], verbose=False, h=1e-6)
    e = rel_error(param_grad_num, grads[param_name])
    print("%s relative error: %e" % (param_name, e))
    assert e < 5e-6, param_name

# %% [markdown]
# # Overfit a small dataset
# As in the classic notebook: 50 training captions, 100 Adam iterations. You should see a final
# loss below 0.1.

# %%
np.random.seed(231)

small_data = load_coco_data(base_dir, max_train=50)

small_rnn_model = CaptioningRNN(
    cell_type="rnn",
    word_to_idx=data["word_to_idx"],
    input_dim=data["train_features"].shape[1],
    hidden_dim=512,
    wordvec_dim=256,
)

small_rnn_solver = CaptioningSolver(
    small_rnn_model, small_data,
    update_rule="adam",
    num_epochs=50,
    batch_size=25,
    optim_config={"learning_rate": 5e-3},
    lr_decay=0.95,
    verbose=True, print_every=10,
)

small_rnn_solver.train()

# Plot the training losses
plt.plot(small_rnn_solver.loss_history)
plt.xlabel("Iteration")
plt.ylabel("Loss")
plt.title("Training loss history")
plt.show()

print("Final loss: ", small_rnn_solver.loss_history[-1])
assert small_rnn_solver.loss_history[-1] < 0.1

# %% [markdown]
# # Test-time sampling
# At test time the model feeds its own most likely word back in at every step, starting from
# `<START>` and the image's `h0`. On training images the overfit model reproduces its captions;
# on validation images it has seen 50 captions only, so expect good grammar and wrong content
# (the LSTM notebook trains a model that gets the content right too).

# %%
for split in ["train", "val"]:
    gt_captions, features, urls = sample_coco_minibatch(small_data, split=split, batch_size=3)
    gt_captions = decode_captions(gt_captions, data["idx_to_word"])

    sample_captions = small_rnn_model.sample(features)
    sample_captions = decode_captions(sample_captions, data["idx_to_word"])

    for gt_caption, sample_caption in zip(gt_captions, sample_captions):
        print(f"{split:5s} sample: {sample_caption}\n      GT:     {gt_caption}")
