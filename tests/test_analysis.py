"""The patch-distance analyses (supplement B): neighbour maps and the class-distance study."""
import os
import subprocess
import sys

import numpy as np
import pytest

from semiseg_tf.paper.analysis import class_distances as cd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_neighbour_patch_distances_equal_direct_patch_differences():
    from semiseg_tf.paper.analysis import patch_distance
    rng = np.random.RandomState(0)
    image = rng.rand(12, 15, 3)
    size = (5, 3)
    maps = patch_distance.neighbour_distance_maps(image, size)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="symmetric")

    def patch(y, x):   # the 5x3 patch centred on image pixel (y, x), mirrored beyond the border
        return padded[y + 4 - 2:y + 4 + 3, x + 4 - 1:x + 4 + 2]
    for y, x in [(6, 7), (0, 0), (11, 14), (3, 0)]:
        for name, (dy, dx) in patch_distance.DIRECTIONS.items():
            direct = np.sqrt(((patch(y + dy, x + dx) - patch(y, x)) ** 2).sum())
            assert maps[name][y, x] == pytest.approx(direct), (name, y, x)
    average = patch_distance.average_distance_map(image, size)
    assert average[6, 7] == pytest.approx(np.mean([m[6, 7] for m in maps.values()]))


def test_class_boundaries_skip_ignored_pixels():
    from semiseg_tf.visualise import class_boundaries
    label = np.array([[0, 0, 1],
                      [0, 255, 1],
                      [2, 2, 2]])
    expected = np.array([[0, 1, 1],
                         [1, 0, 1],
                         [1, 0, 1]], bool)
    np.testing.assert_array_equal(class_boundaries(label), expected)


def test_patch_distance_command_on_an_image_with_its_label(tmp_path):
    from PIL import Image
    image = np.zeros((40, 50, 3), np.uint8)
    image[:, 25:] = 200
    label = np.zeros((40, 50), np.uint8)
    label[:, 25:] = 1
    Image.fromarray(image).save(tmp_path / "pic.png")
    Image.fromarray(label).save(tmp_path / "pic_label.png")
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.paper.analysis.patch_distance", f"--image={tmp_path}/pic.png",
         f"--label={tmp_path}/pic_label.png", "--patch_sizes=3,7", f"--out_dir={tmp_path}/out"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    arrays = np.load(tmp_path / "out" / "pic_distances.npz")
    # A vertical step of 200/255 in all three channels: across it, a 7-px-tall patch differs in one
    # column by sqrt(7 * 3) * 200/255; far from it, patches are equal.
    assert arrays["patch7_right"][20, 24] == pytest.approx(np.sqrt(21) * 200 / 255, rel=1e-5)
    assert arrays["patch7_right"][20, 5] == 0
    for name in ("pic_image.png", "pic_patch3.png", "pic_patch7.png"):
        assert (tmp_path / "out" / name).exists()
    bad = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.paper.analysis.patch_distance", f"--image={tmp_path}/pic.png",
         "--patch_sizes=4", f"--out_dir={tmp_path}/out"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: --patch_sizes=4: expected odd positive integers")


# --- the intra/inter-class study (supplement B.2) ----------------------------------------------------------

def _tiny_set(count=4, shape=(14, 17)):
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, shape + (3,)).astype(np.uint8) for _ in range(count)]
    labels = []
    for i in range(count):
        label = np.zeros(shape, np.uint8)
        label[:, 8 + i % 3:] = 1
        label[3, 3] = 255
        labels.append(label)
    return cd.ImageSet(lambda i: (images[i], labels[i]), count), images, labels


def test_anchors_sit_on_class_boundaries_away_from_the_edges():
    _, _, labels = _tiny_set()
    anchors = cd.choose_anchors(labels, 5, 10, seed=1)
    assert len(anchors) == 10 and len({tuple(a) for a in anchors}) == 10
    for image, direction, y, x, cls in anchors:
        dy, dx = cd.DIRECTIONS[direction]
        assert 3 <= y < 11 and 3 <= x < 14           # border (5 - 1) / 2 + 1 = 3
        assert labels[image][y, x] == cls != labels[image][y + dy, x + dx] != 255
    assert np.array_equal(anchors, cd.choose_anchors(labels, 5, 10, seed=1))


def test_nearest_patches_match_brute_force():
    images, raw_images, labels = _tiny_set()
    anchors = cd.choose_anchors(labels, 5, 6, seed=1)
    result = cd.study(images, anchors, 5, batch=4)

    def patch(image, y, x):   # 5x5 around (y, x), mirrored beyond the border, in [0, 1]
        padded = np.pad(image.astype(np.float64) / 255, ((2, 2), (2, 2), (0, 0)), mode="symmetric")
        return padded[y:y + 5, x:x + 5]
    for k, (i, direction, y, x, cls) in enumerate(anchors):
        anchor = patch(raw_images[i], y, x)
        dy, dx = cd.DIRECTIONS[direction]
        assert result["boundary"][k] == pytest.approx(
            np.sqrt(((patch(raw_images[i], y + dy, x + dx) - anchor) ** 2).sum()), rel=1e-5)
        best = {"intra": (np.inf, None), "inter": (np.inf, None)}
        for j in range(len(raw_images)):
            for yy in range(14):
                for xx in range(17):
                    if j == i or labels[j][yy, xx] == 255:
                        continue
                    kind = "intra" if labels[j][yy, xx] == cls else "inter"
                    distance = np.sqrt(((patch(raw_images[j], yy, xx) - anchor) ** 2).sum())
                    if distance < best[kind][0]:
                        best[kind] = (distance, (j, yy, xx))
        for kind in ("intra", "inter"):
            assert result[kind][k] == pytest.approx(best[kind][0], rel=1e-4)
            assert tuple(result[f"{kind}_at"][k]) == best[kind][1]


def test_shards_merge_into_the_single_run(tmp_path):
    command = [sys.executable, "-m", "semiseg_tf.paper.analysis.class_distances", "--dataset=synthetic",
               "--synthetic_num_train=6", "--patch_size=9", "--n_anchors=7"]
    whole = subprocess.run(command + [f"--out_dir={tmp_path}/whole"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert "anchor-image pairs/s" in whole.stderr
    for shard in ("2/2", "1/2"):
        proc = subprocess.run(command + [f"--shard={shard}", f"--out_dir={tmp_path}/parts"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    incomplete = tmp_path / "parts" / "shard_0000_of_0002.npz"
    os.rename(incomplete, tmp_path / "kept.npz")
    missing = subprocess.run(command + ["--merge", f"--out_dir={tmp_path}/parts"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "shards 1 of 2 are missing" in missing.stderr
    os.rename(tmp_path / "kept.npz", incomplete)
    merged = subprocess.run(command + ["--merge", f"--out_dir={tmp_path}/parts"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr[-2000:]
    a = np.load(tmp_path / "whole" / "class_distances.npz")
    b = np.load(tmp_path / "parts" / "class_distances.npz")
    for key in ("anchors", "boundary", "intra", "inter", "intra_at"):
        np.testing.assert_array_equal(a[key], b[key])
    assert (tmp_path / "parts" / "class_distances.png").exists()
