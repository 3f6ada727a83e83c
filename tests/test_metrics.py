"""IoU from a confusion matrix, against a hand-worked example."""
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import metrics


def test_confusion_and_iou_hand_worked():
    # 3 classes; truth and prediction over 10 pixels, 2 of them ignored (255).
    truth = np.array([0, 0, 0, 1, 1, 1, 2, 2, 255, 255])
    pred = np.array([0, 0, 1, 1, 1, 0, 2, 1, 2, 0])
    confusion = metrics.confusion_matrix(truth, pred, 3).numpy()
    np.testing.assert_array_equal(confusion, [[2, 1, 0], [1, 2, 0], [0, 1, 1]])
    per_class, mean_iou = metrics.iou_from_confusion(confusion)
    # class 0: I=2, U=3+3-2=4; class 1: I=2, U=3+4-2=5; class 2: I=1, U=2+1-1=2
    np.testing.assert_allclose(per_class, [2 / 4, 2 / 5, 1 / 2])
    np.testing.assert_allclose(mean_iou, (0.5 + 0.4 + 0.5) / 3)


def test_absent_class_counts_as_zero_in_the_mean():
    confusion = np.array([[5, 0], [0, 0]])
    per_class, mean_iou = metrics.iou_from_confusion(confusion)
    np.testing.assert_allclose(per_class, [1.0, 0.0])
    assert mean_iou == 0.5


def test_f1_dice_accuracies_and_the_absent_class_policy_hand_worked():
    # 3 classes; class 2 in neither truth nor prediction.
    confusion = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    zero = metrics.scores(confusion, ["a", "b", "c"])
    skip = metrics.scores(confusion, ["a", "b", "c"], absent="skip")
    # IoU: a 5 / (6 + 7 - 5) = 5/8; b 3 / (5 + 4 - 3) = 1/2; F1: a 2*5 / (6 + 7); b 2*3 / (5 + 4).
    for result in (zero, skip):
        np.testing.assert_allclose(list(result["per_class_iou"].values()), [5 / 8, 1 / 2, 0])
        np.testing.assert_allclose(list(result["per_class_f1"].values()), [10 / 13, 6 / 9, 0])
        assert result["pixel_accuracy"] == pytest.approx(8 / 11)
        assert result["mean_class_accuracy"] == pytest.approx((5 / 6 + 3 / 5) / 2)
        assert result["absent_classes"]["classes"] == ["c"]
    assert zero["miou"] == pytest.approx((5 / 8 + 1 / 2) / 3)
    assert skip["miou"] == pytest.approx((5 / 8 + 1 / 2) / 2)
    assert zero["mean_f1"] == pytest.approx((10 / 13 + 6 / 9) / 3)
    assert skip["mean_f1"] == pytest.approx((10 / 13 + 6 / 9) / 2)
    # F1 is Dice, 2 IoU / (1 + IoU), class by class.
    iou = np.array(list(zero["per_class_iou"].values()))
    np.testing.assert_allclose(list(zero["per_class_f1"].values()), 2 * iou / (1 + iou))
    with pytest.raises(ValueError, match="absent='mmseg'"):
        metrics.scores(confusion, ["a", "b", "c"], absent="mmseg")


def test_dataset_level_not_per_image_average():
    # Image 1: class 1 perfectly found on 1 pixel; image 2: class 1 missed on 9 pixels.
    first = metrics.confusion_matrix(np.array([1, 0]), np.array([1, 0]), 2).numpy()
    second = metrics.confusion_matrix(np.full(9, 1), np.zeros(9, int), 2).numpy()
    per_class, _ = metrics.iou_from_confusion(first + second)
    np.testing.assert_allclose(per_class[1], 1 / 10)   # per-image average would be (1 + 0) / 2


def test_evaluator_fills_holes_of_binary_predictions_before_scoring():
    """A predicted ring around a 3x3 hole against a 5x5 square lesion: filled, it is the square."""
    from semiseg_tf.data import base
    from semiseg_tf.evaluation import Evaluator

    truth = np.zeros((9, 9), np.uint8)
    truth[2:7, 2:7] = 1

    class Square(base.DataSource):
        name, class_names, fixed_image_size = "square", ("background", "lesion"), (9, 9)
        num_train = 0

        def read_train(self, index):
            raise NotImplementedError

        def validation(self):
            return tf.data.Dataset.from_tensors((np.zeros((9, 9, 3), np.uint8), truth))

    ring = truth.copy()
    ring[3:6, 3:6] = 0

    def network(images, training=False):
        return tf.one_hot(tf.constant(ring[None], tf.int32), 2) * tf.ones_like(images[..., :1])

    plain = Evaluator(Square(), 1)(network)
    filled = Evaluator(Square(), 1, fill_holes=True)(network)
    assert plain["per_class_iou"]["lesion"] == pytest.approx(16 / 25)
    assert plain["per_class_iou"]["background"] == pytest.approx(56 / 65)
    assert filled["miou"] == 1.0
