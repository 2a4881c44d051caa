"""The classic general Solver on the shared core: the classic trajectory, accuracy and Matthews
correlation, best parameters, checkpoints that record the model, and the Transformer on it."""
import os

import numpy as np
import pytest

from _captioning_helpers import global_random_state  # noqa: F401 (a fixture)
from fastrnn import classifiers, optim
from fastrnn.metrics import matthews_corrcoef
from fastrnn.solver import Solver
from fastrnn.training.checkpoint import read_checkpoint


class SoftmaxClassifier:
    """A linear softmax classifier in the classic model style: loss(X) -> scores,
    loss(X, y) -> (loss, grads)."""

    def __init__(self, D, C, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"W": rng.standard_normal((D, C)) * 0.01, "b": np.zeros(C)}

    def loss(self, X, y=None):
        scores = X @ self.params["W"] + self.params["b"]
        if y is None:
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        N = X.shape[0]
        loss = -np.log(probs[np.arange(N), y]).mean()
        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        return loss, {"W": X.T @ dscores, "b": dscores.sum(axis=0)}


def _blobs(seed=0, N=300, D=5, C=3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((C, D)) * 2
    y = rng.integers(0, C, N)
    X = centres[y] + rng.standard_normal((N, D))
    return {"X_train": X[:200], "y_train": y[:200], "X_val": X[200:], "y_val": y[200:]}


def _classic_solver_run(model, data, batch_size, num_epochs, learning_rate, lr_decay,
                        num_train_samples):
    """The classic cs231n Solver's train() with sgd, written out: the oracle of the trajectory."""
    def check_accuracy(X, y, num_samples=None, batch_size=100):
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = np.random.choice(N, num_samples)
            N, X, y = num_samples, X[mask], y[mask]
        num_batches = N // batch_size + (N % batch_size != 0)
        y_pred = [np.argmax(model.loss(X[i * batch_size:(i + 1) * batch_size]), axis=1)
                  for i in range(num_batches)]
        return np.mean(np.hstack(y_pred) == y)

    num_train = data["X_train"].shape[0]
    iterations_per_epoch = max(num_train // batch_size, 1)
    num_iterations = num_epochs * iterations_per_epoch
    configs = {p: {"learning_rate": learning_rate} for p in model.params}
    loss_history, train_acc_history, val_acc_history = [], [], []
    best_val_acc, best_params, epoch = 0, {}, 0
    for t in range(num_iterations):
        batch_mask = np.random.choice(num_train, batch_size)
        loss, grads = model.loss(data["X_train"][batch_mask], data["y_train"][batch_mask])
        loss_history.append(loss)
        for p, w in model.params.items():
            model.params[p], configs[p] = optim.sgd(w, grads[p], configs[p])
        epoch_end = (t + 1) % iterations_per_epoch == 0
        if epoch_end:
            epoch += 1
            for c in configs.values():
                c["learning_rate"] *= lr_decay
        if t == 0 or t == num_iterations - 1 or epoch_end:
            train_acc = check_accuracy(data["X_train"], data["y_train"], num_train_samples)
            val_acc = check_accuracy(data["X_val"], data["y_val"])
            train_acc_history.append(train_acc)
            val_acc_history.append(val_acc)
            if val_acc > best_val_acc:
                best_val_acc = val_acc
                best_params = {k: v.copy() for k, v in model.params.items()}
    model.params = best_params
    return loss_history, train_acc_history, val_acc_history, best_val_acc


def test_the_classic_trajectory_on_the_global_stream(global_random_state):
    data = _blobs()
    settings = dict(batch_size=32, num_epochs=3)
    np.random.seed(7)
    classic = SoftmaxClassifier(5, 3)
    expected = _classic_solver_run(classic, data, learning_rate=0.05, lr_decay=0.9,
                                   num_train_samples=50, **settings)
    np.random.seed(7)
    model = SoftmaxClassifier(5, 3)
    solver = Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 0.05},
                    lr_decay=0.9, num_train_samples=50, verbose=False, **settings)
    solver.train()
    assert solver.loss_history == pytest.approx(expected[0], rel=1e-12)
    assert solver.train_acc_history == expected[1]
    assert solver.val_acc_history == expected[2]
    assert solver.best_val_acc == expected[3]
    assert len(solver.val_acc_history) == settings["num_epochs"] + 1  # after iteration 1 too
    for name, value in classic.params.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_validation_mcc_is_recorded_and_the_best_parameters_end_in_the_model():
    data = _blobs(seed=1)
    model = SoftmaxClassifier(5, 3)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                    batch_size=25, num_epochs=4, verbose=False, rng=0)
    solver.train()
    assert len(solver.val_mcc_history) == len(solver.val_acc_history) == 5
    assert solver.best_val_acc == max(solver.val_acc_history) > 0.8
    assert max(solver.val_mcc_history) > 0.7
    for name, value in solver.best_params.items():
        np.testing.assert_array_equal(model.params[name], value)
    y_pred = np.argmax(model.loss(data["X_val"]), axis=1)
    assert solver.check_accuracy(data["X_val"], data["y_val"]) == np.mean(y_pred == data["y_val"])


def _mcc_from_covariances(y_true, y_pred, classes):
    """Gorodkin's R_K written as its definition: covariances of the one-hot label matrices."""
    X = (np.asarray(y_true)[:, None] == classes).astype(float)
    Y = (np.asarray(y_pred)[:, None] == classes).astype(float)

    def cov(A, B):
        return sum(np.cov(A[:, k], B[:, k], bias=True)[0, 1] for k in range(len(classes)))

    return cov(X, Y) / np.sqrt(cov(X, X) * cov(Y, Y))


def test_matthews_correlation():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, 1 - y_true)
    assert matthews_corrcoef(y_true, y_pred) == pytest.approx(np.corrcoef(y_true, y_pred)[0, 1],
                                                              rel=1e-12)
    assert matthews_corrcoef([1, 1, 1, 0], [1, 0, 1, 1]) == pytest.approx(-1 / 3)
    y3 = rng.integers(0, 3, 400)
    p3 = np.where(rng.random(400) < 0.6, y3, rng.integers(0, 3, 400))
    assert matthews_corrcoef(y3, p3) == pytest.approx(_mcc_from_covariances(y3, p3, np.arange(3)),
                                                      rel=1e-12)
    assert matthews_corrcoef(y3, y3) == pytest.approx(1.0)
    assert matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0  # undefined: one predicted class
    with pytest.raises(ValueError, match="differ in length"):
        matthews_corrcoef([0, 1], [0, 1, 1])


@pytest.mark.parametrize("data, message", [
    ({"X_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "X_val": np.zeros((2, 2))},
     "'y_val'"),
    ({"X_train": np.zeros((4, 2)), "y_train": np.zeros(3, int), "X_val": np.zeros((2, 2)),
      "y_val": np.zeros(2, int)}, r"X_train \(4, 2\) and y_train \(3,\)"),
    ({"X_train": np.zeros((0, 2)), "y_train": np.zeros(0, int), "X_val": np.zeros((2, 2)),
      "y_val": np.zeros(2, int)}, "X_train holds no rows"),
])
def test_bad_data_is_refused_naming_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        Solver(SoftmaxClassifier(2, 2), data)


# ------------------------------------------------------------------ the Transformer on it

def _cola():
    from fastrnn.cola_dataset import make_builtin_cola

    d = make_builtin_cola(num_train=640, num_val=200)
    return d, {"X_train": d["train_inxs"], "y_train": d["train_labels"],
               "X_val": d["val_inxs"], "y_val": d["val_labels"]}


def _small_transformer(d):
    from fastrnn.classifiers.transformer import ClassificationTransformer

    return ClassificationTransformer(d["word_to_ix"], hidden_dim=16, num_heads=2,
                                     dim_feedforward=32, dim_k=8, dim_v=8, dim_q=8, seed=3)


def test_a_transformer_run_resumes_on_its_trajectory_and_its_checkpoint_rebuilds_it(tmp_path):
    d, data = _cola()
    settings = dict(update_rule="adam", optim_config={"learning_rate": 2e-3}, batch_size=64,
                    verbose=False, num_val_samples=100)
    whole = Solver(_small_transformer(d), data, num_epochs=3, rng=5,
                   checkpoint_name=str(tmp_path / "run"), **settings)
    whole.train()
    assert sorted(os.listdir(tmp_path)) == ["run_epoch_1.h5", "run_epoch_2.h5", "run_epoch_3.h5"]
    assert len(whole.val_mcc_history) == 4

    first = Solver(_small_transformer(d), data, num_epochs=2, rng=5,
                   checkpoint_dir=tmp_path / "part", **settings)
    first.train()
    resumed = Solver(_small_transformer(d), data, num_epochs=3, rng=5,
                     resume=tmp_path / "part" / "checkpoint.h5", **settings)
    assert resumed.best_params and resumed.best_val_acc == first.best_val_acc
    resumed.train()
    assert resumed.loss_history == whole.loss_history
    assert resumed.val_acc_history == whole.val_acc_history
    assert resumed.val_mcc_history == whole.val_mcc_history
    for name, value in whole.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value)

    stored = read_checkpoint(tmp_path / "run_epoch_3.h5")
    assert stored["attrs"]["model_kind"] == "ClassificationTransformer"
    assert stored["attrs"]["solver"] == "Solver"
    assert stored["model_config"] == dict(hidden_dim=16, num_heads=2, dim_feedforward=32, dim_k=8,
                                          dim_v=8, dim_q=8, max_length=43, dtype="float32",
                                          pad_index=None)
    rebuilt = classifiers.from_checkpoint(stored, "run_epoch_3.h5")
    assert type(rebuilt).__name__ == "ClassificationTransformer"
    for name, value in stored["params"].items():
        np.testing.assert_array_equal(rebuilt.params[name], value)
    np.testing.assert_array_equal(rebuilt.loss(d["val_inxs"][:20]),
                                  _with_params(_small_transformer(d), stored["params"]).loss(
                                      d["val_inxs"][:20]))


def _with_params(model, params):
    model.params.update(params)
    return model


def test_a_checkpoint_resumes_only_in_its_own_solver_and_model(tmp_path):
    from fastrnn.classifiers.transformer import ClassificationTransformer

    d, data = _cola()
    solver = Solver(_small_transformer(d), data, update_rule="adam", batch_size=64, num_epochs=1,
                    verbose=False, rng=0, checkpoint_dir=tmp_path)
    solver.train()
    wider = ClassificationTransformer(d["word_to_ix"], hidden_dim=16, num_heads=2,
                                      dim_feedforward=32, dim_k=8, dim_v=8, dim_q=8, pad_index=0)
    with pytest.raises(ValueError, match="built with pad_index=None; this model has pad_index=0"):
        Solver(wider, data, update_rule="adam", batch_size=64, resume=solver.checkpoint_path)
    with pytest.raises(ValueError, match="holds a ClassificationTransformer, this model is a "
                                         "SoftmaxClassifier"):
        Solver(SoftmaxClassifier(43, 2), data, update_rule="adam", batch_size=64,
               resume=solver.checkpoint_path)
    from fastrnn.captioning_solver import CaptioningSolver

    with pytest.raises(ValueError, match="written by a Solver, this is a CaptioningSolver"):
        CaptioningSolver(_small_transformer(d), {"train_captions": np.zeros((640, 3), int)},
                         update_rule="adam", batch_size=64, resume=solver.checkpoint_path)
