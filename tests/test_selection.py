"""Ranking an unlabelled pool for labelling (semiseg_tf/selection.py) against hand-computed cases."""
import numpy as np
import pytest

from semiseg_tf import selection


def maps(*pixels):
    """A [1, len(pixels), C] probability map from per-pixel class probabilities."""
    return np.array([pixels], np.float64)


def test_three_images_of_known_entropy_rank_most_uncertain_first():
    uniform, certain = [1 / 3] * 3, [1.0, 0.0, 0.0]
    images = {"guess": maps(uniform, uniform), "sure": maps(certain, certain),
              "half": maps(uniform, certain)}
    scores = {name: selection.uncertainty(p, "entropy") for name, p in images.items()}
    assert scores == pytest.approx({"guess": 1.0, "sure": 0.0, "half": 0.5})
    names = list(scores)
    assert [names[i] for i in selection.choose([scores[n] for n in names], 2)] == ["guess", "half"]


def test_margin_unsure_and_disagreement_by_hand():
    p = maps([0.6, 0.3, 0.1], [0.98, 0.01, 0.01])
    assert selection.uncertainty(p, "margin") == pytest.approx(((1 - 0.3) + (1 - 0.97)) / 2)
    assert selection.uncertainty(p, "unsure", threshold=0.97) == 0.5
    student = maps([0.2, 0.7, 0.1], [0.9, 0.05, 0.05])
    assert selection.uncertainty(p, "disagreement", student_probabilities=student) == 0.5
    with pytest.raises(ValueError, match="needs the student's"):
        selection.uncertainty(p, "disagreement")


def test_diversity_keeps_two_near_duplicates_apart():
    # Images 0 and 1 are near-duplicates and the most uncertain; image 2 differs, a little surer.
    scores = [0.90, 0.89, 0.80, 0.10]
    features = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0], [0.02, 0.01]])
    assert selection.choose(scores, 2) == [0, 1]
    assert selection.choose(scores, 2, features=features) == [0, 2]


def test_k_center_greedy_takes_each_time_the_point_farthest_from_those_taken():
    points = np.random.default_rng(3).normal(size=(40, 5))
    chosen = selection.k_center_greedy(points, 8, first=7)
    assert chosen[0] == 7 and len(set(chosen)) == 8
    for k in range(1, 8):
        distance = np.min(np.linalg.norm(points[:, None] - points[chosen[:k]][None], axis=2),
                          axis=1)
        assert chosen[k] == int(np.argmax(distance))


def test_a_rare_class_raises_an_images_weight_by_its_share_and_rarity():
    # Labelled frequencies 0.7, 0.2, 0.1: median 0.2, so only class 2 is rare (0.2 / 0.1 - 1 = 1).
    frequency = [0.7, 0.2, 0.1]
    shares = selection.class_shares(maps(*[[0.9, 0.05, 0.05]] * 5, *[[0.1, 0.8, 0.1]] * 3,
                                         *[[0.1, 0.1, 0.8]] * 2))
    assert shares == pytest.approx([0.5, 0.3, 0.2])
    assert selection.rare_class_weight(shares, frequency) == pytest.approx(1.2)
    assert selection.rare_class_weight([1.0, 0.0, 0.0], frequency) == 1.0
