"""Which images to label next: each unlabelled image scored by how unsure the model is of it, and a
batch chosen so that it is not many copies of one hard scene (active learning).

Per-image uncertainty, from the class probabilities of the network the run evaluates (the
teacher), each in [0, 1]:
- `entropy`: the mean over pixels of the normalised entropy (`confidence.normalised_entropy`);
- `margin`: the mean over pixels of 1 - (p1 - p2), p1 and p2 the two largest probabilities
  (Scheffer et al., 2001; Joshi et al., CVPR 2009);
- `unsure`: the share of pixels whose largest probability is under a threshold (the share the
  mean teacher would leave out of its consistency loss at that confidence);
- `disagreement`: the share of pixels whose class differs between the teacher and the student
  (query by committee with the two networks a run has; Seung et al., 1992).

Diversity: `k_center_greedy` (Sener and Savarese, ICLR 2018) picks each next image the farthest,
in a feature space (`select` uses each image's class probabilities pooled to a grid), from those
already chosen; `choose` applies it to the most
uncertain candidates, so that the batch is both uncertain and spread. Class balance:
`rare_class_weight` raises the score of images predicted to hold classes that are rare (in the
labelled masks, or in the model's predictions over the pool, as `select --rare_classes` counts).
"""
import numpy as np

STRATEGIES = ("entropy", "margin", "unsure", "disagreement")


def uncertainty(probabilities, strategy, threshold=0.97, student_probabilities=None):
    """One image's score in [0, 1] (higher: more worth labelling) from its class probabilities
    [H, W, C] (the teacher's; `student_probabilities` alike for `disagreement`)."""
    p = np.asarray(probabilities, np.float64)
    if strategy == "entropy":
        from semiseg_tf import confidence    # TensorFlow, through the data package: not for --help
        return float(confidence.normalised_entropy(p).mean())
    if strategy == "margin":
        top_two = np.sort(p, axis=-1)[..., -2:]
        return float((1 - (top_two[..., 1] - top_two[..., 0])).mean())
    if strategy == "unsure":
        return float((p.max(-1) < threshold).mean())
    if strategy == "disagreement":
        if student_probabilities is None:
            raise ValueError("disagreement: needs the student's probabilities too")
        return float((p.argmax(-1) != np.asarray(student_probabilities).argmax(-1)).mean())
    raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")


def class_shares(probabilities):
    """[C] the share of an image's pixels predicted as each class, from [H, W, C]."""
    labels = np.asarray(probabilities).argmax(-1)
    classes = np.asarray(probabilities).shape[-1]
    return np.bincount(labels.ravel(), minlength=classes) / labels.size


def rare_class_weight(shares, frequency):
    """A factor >= 1 for an image whose predicted class shares are `shares` [C]: 1 plus the
    share of its pixels in each class weighed by how rare that class is (`frequency` [C], summing
    to 1: among the labelled pixels, or the pool's predicted ones): (median frequency /
    frequency) - 1 where that is positive, so common classes add nothing and a class never seen
    adds the most."""
    frequency = np.asarray(frequency, np.float64)
    present = frequency[frequency > 0]
    median = np.median(present) if present.size else 1.0
    rarity = np.where(frequency > 0, median / np.maximum(frequency, 1e-12), median * 1e3) - 1
    return float(1 + np.sum(np.asarray(shares) * np.clip(rarity, 0, None)))


def k_center_greedy(features, count, first):
    """Indices of `count` rows of `features` [N, D]: `first`, then each time the row farthest
    (Euclidean) from every row chosen so far (the greedy 2-approximation of the k-center problem)."""
    features = np.asarray(features, np.float64)
    count = min(count, len(features))
    chosen = [int(first)]
    nearest = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < count:
        nearest[chosen] = -1.0            # never chosen twice, even among identical rows
        index = int(np.argmax(nearest))
        chosen.append(index)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[index], axis=1))
    return chosen


def choose(scores, budget, features=None, candidates=4):
    """Indices of `budget` images, most worth labelling first. Without `features`: the highest
    `scores`. With features [N, D]: k-center greedy among the `candidates` x budget highest
    scores, starting from the highest, then ordered by score (diversity within the uncertain)."""
    scores = np.asarray(scores, np.float64)
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    if features is None or budget >= len(order):
        return order[:budget]
    pool = order[:max(budget, candidates * budget)]
    picked = k_center_greedy(np.asarray(features)[pool], budget, 0)
    return sorted((pool[i] for i in picked), key=lambda i: (-scores[i], i))
