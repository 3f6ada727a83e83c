"""The supervised loss's class weights and OHEM, against PyTorch and numpy."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_RUN, parse_flags
from semiseg_tf import errors
from semiseg_tf.options import supervised as supervised_flags
from semiseg_tf.semisup import class_weights, losses

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_ohem_cross_entropy(logits, labels, thresh, min_kept, weight=None):
    """UniMatch's ProbOhemCrossEntropy2d.forward (util/ohem.py), on NHWC inputs."""
    pred = torch.from_numpy(logits).permute(0, 3, 1, 2)
    target = torch.from_numpy(labels).long()
    b, c, h, w = pred.size()
    target = target.view(-1)
    valid_mask = target.ne(255)
    target = target * valid_mask.long()
    num_valid = valid_mask.sum()
    prob = F.softmax(pred, dim=1)
    prob = (prob.transpose(0, 1)).reshape(c, -1)
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = prob.masked_fill_(~valid_mask, 1)
        mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
        threshold = thresh
        if min_kept > 0:
            _, index = mask_prob.sort()
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept_mask = mask_prob.le(threshold)
            target = target * kept_mask.long()
            valid_mask = valid_mask * kept_mask
    target = target.masked_fill_(~valid_mask, 255).view(b, h, w)
    weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return float(F.cross_entropy(pred, target, weight=weight, ignore_index=255))


def batch(seed=0, shape=(2, 6, 7), classes=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (*shape, classes)).astype(np.float32)
    labels = rng.integers(0, classes, shape).astype(np.int32)
    labels[rng.random(shape) < 0.2] = 255
    return logits, labels


def test_class_weighted_cross_entropy_equals_torchs():
    logits, labels = batch()
    weights = [0.5, 2.0, 1.0, 4.0]
    ours = losses.cross_entropy(logits, labels, class_weights=weights)
    theirs = F.cross_entropy(torch.from_numpy(logits).permute(0, 3, 1, 2),
                             torch.from_numpy(labels).long(), ignore_index=255,
                             weight=torch.tensor(weights))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    # Equal weights are the plain loss.
    plain = losses.cross_entropy(logits, labels)
    assert float(losses.cross_entropy(logits, labels, class_weights=[3.0] * 4)) == pytest.approx(
        float(plain), rel=1e-6)


@pytest.mark.parametrize("thresh, min_kept", [(0.7, 20), (0.7, 0), (0.3, 5), (0.9, 80),
                                              (0.5, 1000)])
def test_ohem_equals_unimatchs_prob_ohem_cross_entropy(thresh, min_kept):
    # (0.5, 1000): more than the batch's valid pixels, so every pixel is kept.
    logits, labels = batch(seed=1)
    ours = losses.cross_entropy(logits, labels, ohem=(thresh, min_kept))
    assert float(ours) == pytest.approx(torch_ohem_cross_entropy(logits, labels, thresh, min_kept),
                                        rel=1e-5)
    weights = [1.0, 0.25, 3.0, 1.5]
    ours = losses.cross_entropy(logits, labels, class_weights=weights, ohem=(thresh, min_kept))
    assert float(ours) == pytest.approx(
        torch_ohem_cross_entropy(logits, labels, thresh, min_kept, weights), rel=1e-5)


def test_ohem_keeps_the_hardest_pixels():
    logits, labels = batch(seed=2)
    valid = labels != 255
    kept = losses.ohem_kept(logits, np.where(valid, labels, 0), valid, 1e-4, 10).numpy()
    probs = tf.nn.softmax(logits).numpy()
    true_prob = np.take_along_axis(probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    true_prob[~valid] = 1
    assert kept.sum() == 10                     # none as sure of a wrong class: min_kept rules
    assert true_prob[kept].max() <= np.sort(true_prob.ravel())[9]


def test_class_weights_from_pixel_counts_hand_worked():
    # Two images, three classes: class 0 on both, class 1 on the first only, class 2 nowhere.
    counts = np.array([[60, 40, 0], [100, 0, 0]])
    # inverse: N / (K n_c), N = 200, K = 2 classes present.
    np.testing.assert_allclose(class_weights.from_counts(counts, "inverse"),
                               [200 / (2 * 160), 200 / (2 * 40), 1.0])
    # median frequency: f_0 = 160 / 200, f_1 = 40 / 100 (only the first image holds class 1).
    f = np.array([160 / 200, 40 / 100])
    np.testing.assert_allclose(class_weights.from_counts(counts, "median"),
                               [*(np.median(f) / f), 1.0])


def test_a_class_weights_file_is_read_and_a_wrong_one_is_one_line(tmp_path):
    good = tmp_path / "weights.txt"
    good.write_text("# background, lesion\n0.5\n2.5\n")
    np.testing.assert_allclose(class_weights.read(str(good), 2), [0.5, 2.5])
    with pytest.raises(errors.ConfigError, match=r"weights.txt: holds 2 weights; the dataset has 3 "
                       r"classes"):
        class_weights.read(str(good), 3)
    bad = tmp_path / "bad.txt"
    bad.write_text("1, x\n")
    with pytest.raises(errors.ConfigError, match=r"bad.txt: not a file of numbers"):
        class_weights.read(str(bad), 2)
    # Negative, infinite in float32, subnormal in float32 (a loss of 0), all 0, not finite.
    for text in ("1 -2", "1 1e300", "1e-320 1e-320", "0 0", "1 nan", "inf 1"):
        bad.write_text(text + "\n")
        with pytest.raises(errors.ConfigError, match=r"bad.txt: each weight must be 0 or between "
                           r"1.18e-38 and 1e\+20 \(the loss runs in float32\), and not all 0$"):
            class_weights.read(str(bad), 2)
    np.testing.assert_array_equal(class_weights.read(str(good), 2).astype(np.float32), [0.5, 2.5])
    with open(bad, "wb") as f:
        f.truncate(3 * 2 ** 30)             # sparse: refused from its size, not read
    with pytest.raises(errors.ConfigError, match=rf"^--class_weights=.*bad.txt: {3 * 2 ** 30} "
                       r"bytes, more than a file of one number per class needs"):
        class_weights.read(str(bad), 2)


def test_the_flags_kinds_are_the_modules_and_bad_values_are_one_line(tmp_path):
    assert supervised_flags.CLASS_WEIGHT_KINDS == class_weights.KINDS
    with pytest.raises(errors.ConfigError, match=r"^--class_weights=.*missing.txt: expected none, "
                       r"inverse, median or a file"):
        parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "r"), "class_weights": "missing.txt"})
    with pytest.raises(errors.ConfigError, match=r"^--ohem_thresh=0.0: must lie in \(0, 1\]"):
        parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "r"), "ohem_thresh": "0"})
