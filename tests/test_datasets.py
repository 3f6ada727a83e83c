"""The file-based datasets: native layouts, preparation, splits, label mappings, bad data."""
import collections
import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import dataset_fixtures as fx
from semiseg_tf.data import layouts, native, prepared, records
from semiseg_tf.data.native import DataError


def open_source(dataset, data_dir, tmp_path, **options):
    return prepared.build_prepared_source(dataset, str(data_dir), str(tmp_path / "prepared"),
                                          workers=1, out=open(os.devnull, "w"), **options)


def read_all(dataset):
    return [(image.numpy(), label.numpy()) for image, label in dataset]


def train_sample(source, index):
    image, label = source.read_train(tf.constant(index, tf.int64))
    return image.numpy(), label.numpy()


# --- label mappings and the half-resolution preparation, against independent oracles ------------------

# The official Cityscapes table (cityscapesScripts labels.py): id -> trainId, 255 for ignoreInEval.
CITYSCAPES_OFFICIAL = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
    13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


def test_cityscapes_ids_map_to_the_official_train_ids():
    assert {i: layouts.CITYSCAPES_LUT[i] for i in range(34)} == CITYSCAPES_OFFICIAL
    assert all(v == 255 for v in layouts.CITYSCAPES_LUT[34:])
    assert layouts.CITYSCAPES_CLASSES[CITYSCAPES_OFFICIAL[24]] == "person"
    assert layouts.CITYSCAPES_CLASSES[CITYSCAPES_OFFICIAL[33]] == "bicycle"


def test_half_resolution_is_block_mean_and_majority_vote_with_ties_to_the_lowest_id():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    label = rng.integers(0, 4, (6, 8))
    label[0:2, 0:2] = [[3, 1], [1, 3]]            # a tie: 1 and 3 twice each -> 1
    half_image = native.half_resolution_image(image)
    half_label = native.half_resolution_label(label)
    for y in range(3):
        for x in range(4):
            block = image[2 * y:2 * y + 2, 2 * x:2 * x + 2].reshape(4, 3).astype(int)
            assert np.array_equal(half_image[y, x], block.sum(0) // 4)    # mean, truncated
            votes = collections.Counter(label[2 * y:2 * y + 2, 2 * x:2 * x + 2].ravel().tolist())
            best = max(votes.values())
            assert half_label[y, x] == min(v for v, n in votes.items() if n == best)
    assert half_label[0, 0] == 1


def test_isic_masks_are_area_resized_then_thresholded_at_127(tmp_path):
    masks = fx.write_isic(tmp_path / "isic", n_train=3, n_val=2)
    source = open_source("isic2017", tmp_path / "isic", tmp_path, n_sup=2)
    names = sorted(masks["train"])
    for index, name in enumerate(names):
        image, label = train_sample(source, index)
        assert image.shape == (248, 248, 3) and label.shape == (248, 248)
        # 496 -> 248 is an exact 2x2 area average; lesion where the (rounded) mean is >= 127.
        mean = masks["train"][name].reshape(248, 2, 248, 2).astype(float).mean((1, 3))
        assert np.array_equal(label, (mean >= 127).astype(np.uint8))
        assert 0 < label.mean() < 1


def test_cityscapes_preparation_halves_images_and_votes_labels_into_train_ids(tmp_path):
    written = fx.write_cityscapes(tmp_path / "cs")
    source = open_source("cityscapes", tmp_path / "cs", tmp_path, n_sup=3)
    names = sorted(written["train"])
    lut = np.array([CITYSCAPES_OFFICIAL.get(i, 255) for i in range(256)], np.uint8)
    for index in (0, len(names) - 1):
        image, label = train_sample(source, index)
        raw_image, raw_ids = written["train"][names[index]]
        assert image.shape == (16, 32, 3)
        assert np.array_equal(image, native.half_resolution_image(raw_image))
        assert np.array_equal(label, lut[native.half_resolution_label(raw_ids.astype(np.int64))])


# --- layouts, counts and splits -----------------------------------------------------------------------

@pytest.mark.parametrize("zipped", [False, True])
def test_cityscapes_counts_names_and_seeded_split(tmp_path, zipped):
    written = fx.write_cityscapes(tmp_path / "cs", zipped=zipped)
    if zipped:
        assert not (tmp_path / "cs" / "leftImg8bit").exists()
    source = open_source("cityscapes", tmp_path / "cs", tmp_path, n_sup=4)
    names = sorted(written["train"])
    assert source.num_train == 10 and len(read_all(source.validation())) == 3
    assert source.num_classes == 19 and source.fixed_image_size is None
    for seed in (12345, 23456):
        labelled, unlabelled = source.labelled_split(4, seed)
        expected = np.random.RandomState(seed).permutation(10)[:4]
        assert labelled.tolist() == expected.tolist()
        assert unlabelled.tolist() == list(range(10))
        assert [source._splits["train"].names[i] for i in labelled] == [names[i] for i in expected]


def test_isic_split_and_counts_from_zips(tmp_path):
    fx.write_isic(tmp_path / "isic", n_train=12, n_val=4, size=(40, 60), zipped=True)
    source = open_source("isic2017", tmp_path / "isic", tmp_path, n_sup=5)
    assert source.num_train == 12 and len(read_all(source.validation())) == 4
    assert source.class_names == ("background", "lesion")
    labelled, _ = source.labelled_split(5, 78901)
    assert labelled.tolist() == np.random.RandomState(78901).permutation(12)[:5].tolist()
    image, label = train_sample(source, 0)
    assert image.shape == (248, 248, 3) and set(np.unique(label)) <= {0, 1}


def test_pascal_aug_takes_the_shipped_split_in_order(pascal_aug_dir):
    data_dir, prepared_dir = pascal_aug_dir
    source = prepared.build_prepared_source("pascal_aug", str(data_dir), str(prepared_dir), n_sup=106,
                                            out=open(os.devnull, "w"))
    split = layouts.read_name_list(os.path.join(layouts.SPLITS_DIR, "pascal_aug", "split_0.txt"))
    assert len(split) == 10582 and source.num_train == 10582
    assert split[:3] == ["2008_006967", "2011_000850", "2008_001551"]
    for n_sup in (106, 1323):
        labelled, unlabelled = source.labelled_split(n_sup, split_seed=999)   # seed not used
        assert [source._splits["train"].names[i] for i in labelled] == split[:n_sup]
        assert len(unlabelled) == 10582
    assert len(source.validation_names()) == 1449
    image, label = train_sample(source, 0)
    raw = np.asarray(Image.open(data_dir / "JPEGImages" / f"{split[0]}.jpg"))
    assert np.array_equal(image, raw)    # JPEG kept as it is and decoded as PIL decodes it


def test_plain_pascal_reads_palette_labels_and_official_lists(tmp_path):
    fx.write_pascal(tmp_path / "VOC2012", augmented=False)
    source = open_source("pascal", tmp_path / "VOC2012", tmp_path, n_sup=4)
    assert source.num_train == 12 and len(source.validation_names()) == 5
    _, label = train_sample(source, 3)
    raw = np.asarray(Image.open(tmp_path / "VOC2012" / "SegmentationClass" / "2007_000003.png"))
    assert Image.open(tmp_path / "VOC2012" / "SegmentationClass" / "2007_000003.png").mode == "P"
    assert np.array_equal(label, raw)     # palette indices, not colours
    labelled, _ = source.labelled_split(4, 12345)
    assert labelled.tolist() == np.random.RandomState(12345).permutation(12)[:4].tolist()


def test_camvid_maps_void_to_ignore_and_has_a_test_set(tmp_path):
    written = fx.write_camvid(tmp_path / "camvid")
    source = open_source("camvid", tmp_path / "camvid", tmp_path, n_sup=2)
    assert source.num_classes == 11 and source.num_train == 6
    assert len(read_all(source.test())) == 2
    _, label = train_sample(source, 0)
    raw = written["train"][sorted(written["train"])[0]]
    assert np.array_equal(label, np.where(raw == 11, 255, raw))
    assert (raw == 11).any()


def test_folder_dataset_reads_classes_unlabelled_images_and_labelled_list(tmp_path):
    root = tmp_path / "mine"
    names = fx.write_folder(root, n_labelled=6, n_unlabelled=3, num_classes=3)
    source = open_source("folder", root, tmp_path, n_sup=4)
    assert source.num_classes == 3 and source.num_train == 9
    assert source.class_names == ("class_0", "class_1", "class_2")
    labelled, unlabelled = source.labelled_split(4, 12345)
    # Only images with masks can be labelled; every image is unlabelled.
    assert set(labelled.tolist()) <= set(range(6)) and len(unlabelled) == 9
    _, label = train_sample(source, 8)            # an image without a mask: ignored everywhere
    assert (label == 255).all()
    # labelled.txt fixes which images are labelled, in its order.
    (root / "labelled.txt").write_text("img_004\nimg_001\n")
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    source = open_source("folder", root, tmp_path, n_sup=2)
    labelled, _ = source.labelled_split(2, 12345)
    assert [source._splits["train"].names[i] for i in labelled] == ["img_004", "img_001"]
    assert source.class_names == ("sky", "road", "car")
    assert names["val"] == source.validation_names()


def test_folder_colour_masks_with_a_palette(tmp_path):
    palette = [(0, 0, 0), (255, 0, 0), (0, 128, 255)]
    fx.write_folder(tmp_path / "mine", num_classes=3, palette=palette)
    source = open_source("folder", tmp_path / "mine", tmp_path, n_sup=2)
    raw = np.asarray(Image.open(tmp_path / "mine" / "masks" / "img_000.png"))
    _, label = train_sample(source, 0)
    expected = np.zeros(raw.shape[:2], np.uint8)
    for k, colour in enumerate(palette):
        expected[(raw == colour).all(-1)] = k
    assert np.array_equal(label, expected) and label.max() > 0
    # The run's pictures and label PNGs use the folder's colours.
    assert source.palette == tuple(palette)


def test_class_colours_of_the_datasets(tmp_path):
    fx.write_folder(tmp_path / "plain", num_classes=3)
    plain = open_source("folder", tmp_path / "plain", tmp_path / "p1", n_sup=2)
    assert plain.palette == ((0, 0, 0), (128, 0, 0), (0, 128, 0))      # Pascal VOC's map
    fx.write_cityscapes(tmp_path / "cs")
    city = open_source("cityscapes", tmp_path / "cs", tmp_path / "p2", n_sup=3)
    assert len(city.palette) == 19 and city.palette[0] == (128, 64, 128)   # road


def test_n_val_holds_out_labelled_images_and_makes_the_official_val_the_test_set(tmp_path):
    fx.write_cityscapes(tmp_path / "cs")
    source = open_source("cityscapes", tmp_path / "cs", tmp_path, n_sup=3, n_val=2, val_seed=131)
    order = np.random.RandomState(131).permutation(10)
    assert source.num_train == 8 and source.train_ids.tolist() == order[:8].tolist()
    assert source.validation_names() == [source._splits["train"].names[i] for i in order[8:]]
    assert len(read_all(source.test())) == 3


def test_split_file_replaces_the_seeded_draw(tmp_path):
    written = fx.write_camvid(tmp_path / "camvid")
    names = sorted(written["train"])
    split_file = tmp_path / "split.txt"
    split_file.write_text(f"{names[5]}\n{names[2]}\n")
    source = open_source("camvid", tmp_path / "camvid", tmp_path, n_sup=2, split_file=str(split_file))
    assert source.labelled_split(2, 12345)[0].tolist() == [5, 2]
    # UniMatch's lists name the image and the mask files; the name is read from the first.
    split_file.write_text(f"JPEGImages/{names[4]}.jpg SegmentationClass/{names[4]}.png\n"
                          f"JPEGImages/{names[1]}.jpg SegmentationClass/{names[1]}.png\n")
    source = open_source("camvid", tmp_path / "camvid", tmp_path, n_sup=2, split_file=str(split_file))
    assert source.labelled_split(2, 12345)[0].tolist() == [4, 1]


# --- the records: format, reading, content check --------------------------------------------------------

def test_records_are_plain_tfrecords_and_random_access_reads_the_same(tmp_path):
    fx.write_camvid(tmp_path / "camvid")
    source = open_source("camvid", tmp_path / "camvid", tmp_path, n_sup=2)
    split = source._splits["train"]
    streamed = [records.decode_example(s) for s in tf.data.TFRecordDataset(split.shard_paths)]
    assert len(streamed) == 6
    for index in (4, 0, 5):
        image, label = train_sample(source, index)
        assert np.array_equal(image, streamed[index][0].numpy())
        assert np.array_equal(label, streamed[index][1].numpy())


def test_a_half_written_or_damaged_preparation_is_detected_and_redone(tmp_path):
    fx.write_camvid(tmp_path / "camvid")
    prepared_dir = tmp_path / "prepared"
    layout = layouts.camvid_layout(str(tmp_path / "camvid"))
    log = tmp_path / "log.txt"

    def prepare(verify=False):
        with open(log, "w") as out:
            manifest = records.prepare(layout, str(prepared_dir), workers=1, verify=verify, out=out)
        return manifest, log.read_text()

    manifest, text = prepare()
    assert "preparing camvid" in text
    assert prepare()[1] == ""                                   # valid: nothing to do
    shard = prepared_dir / manifest["splits"]["train"]["shards"][0]["file"]
    with open(shard, "r+b") as f:                               # killed while writing
        f.truncate(os.path.getsize(shard) - 10)
    assert "bytes, the manifest says" in prepare()[1]
    data = bytearray(shard.read_bytes())                        # same size, other content
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert prepare()[1] == ""                                   # sizes only: not seen...
    assert "content differs" in prepare(verify=True)[1]         # ...but the digests see it
    os.remove(prepared_dir / records.MANIFEST)                  # cut short before the manifest
    assert "no manifest" in prepare()[1]
    label = tmp_path / "camvid" / "trainannot" / "0001TP_000000.png"
    os.utime(label, (1, 1))                                     # the raw data changed
    assert "raw_files changed" in prepare()[1]
    assert not [n for n in os.listdir(prepared_dir) if ".tmp" in n]


# --- bad data: one line naming the file -------------------------------------------------------------------

def _error(dataset, data_dir, tmp_path, n_sup=2, **options):
    with pytest.raises(DataError) as caught:
        open_source(dataset, data_dir, tmp_path, n_sup=n_sup, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_data_errors_name_the_file(tmp_path):
    assert "no such folder" in _error("camvid", tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    assert "leftImg8bit: missing" in _error("cityscapes", tmp_path / "empty", tmp_path)

    root = tmp_path / "camvid"
    fx.write_camvid(root)
    os.remove(root / "valannot" / "0001TP_000001.png")
    assert f"{root / 'valannot' / '0001TP_000001.png'}: missing" in _error("camvid", root, tmp_path)

    root = tmp_path / "camvid2"
    fx.write_camvid(root)
    (root / "train" / "0001TP_000002.png").write_bytes(b"not an image")
    message = _error("camvid", root, tmp_path)
    assert message.startswith(f"{root / 'train' / '0001TP_000002.png'}: not a readable image")

    root = tmp_path / "camvid3"
    fx.write_camvid(root)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "trainannot" / "0001TP_000003.png")
    message = _error("camvid", root, tmp_path)
    assert message == (f"{root / 'trainannot' / '0001TP_000003.png'}: label is 12x10 px but its image "
                       f"{root / 'train' / '0001TP_000003.png'} is 32x24")

    root = tmp_path / "camvid4"
    fx.write_camvid(root)
    label = np.zeros((24, 32), np.uint8)
    label[0, :3] = [14, 40, 255]
    Image.fromarray(label).save(root / "testannot" / "0001TP_000001.png")
    message = _error("camvid", root, tmp_path)
    assert message == (f"{root / 'testannot' / '0001TP_000001.png'}: label values 14, 40 are outside "
                       "the 11 classes (0-10) and are not 255 (ignore)")

    root = tmp_path / "camvid5"
    fx.write_camvid(root)
    assert "--n_sup=7: more than the 6 labelled training images" in _error(
        "camvid", root, tmp_path, n_sup=7)
    # The failed preparations left no half-written shard and no manifest.
    assert not [n for n in os.listdir(tmp_path / "prepared") if ".tmp" in n or n == records.MANIFEST]


def test_bad_folder_datasets(tmp_path):
    root = tmp_path / "nomasks"
    fx.write_folder(root, n_labelled=0, n_unlabelled=3)
    assert "the labelled set would be empty" in _error("folder", root, tmp_path)

    root = tmp_path / "emptylist"
    fx.write_folder(root)
    (root / "labelled.txt").write_text("\n")
    assert f"{root / 'labelled.txt'}: empty" in _error("folder", root, tmp_path)

    root = tmp_path / "orphan"
    fx.write_folder(root)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "masks" / "stray.png")
    assert f"{root / 'masks' / 'stray.png'}: a mask with no image" in _error("folder", root, tmp_path)

    root = tmp_path / "colours"
    fx.write_folder(root, palette=[(0, 0, 0), (255, 0, 0), (0, 0, 255)])
    (root / "palette.txt").write_text("0 0 0\n255 0 0\n")
    assert "mask colours (0, 0, 255) are not in the palette" in _error("folder", root, tmp_path)

    root = tmp_path / "noval"
    fx.write_folder(root, n_val=0)
    assert "no validation set" in _error("folder", root, tmp_path, n_sup=2)
    source = open_source("folder", root, tmp_path / "b", n_sup=2, n_val=2)
    assert len(source.validation_names()) == 2 and source.test() is None


def test_zip_member_errors_name_the_archive_and_member(tmp_path):
    root = tmp_path / "isic"
    fx.write_isic(root, n_train=3, n_val=1, size=(20, 20), zipped=True)
    archive = root / "ISIC-2017_Training_Data.zip"
    broken = "ISIC-2017_Training_Data/ISIC_0000001.jpg"
    with zipfile.ZipFile(archive) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in members.items():
            z.writestr(name, b"broken" if name == broken else data)
    message = _error("isic2017", root, tmp_path)
    assert message.startswith(f"{archive}:{broken}: not a readable image")


def test_manifest_lists_class_counts_per_image(tmp_path):
    written = fx.write_camvid(tmp_path / "camvid")
    source = open_source("camvid", tmp_path / "camvid", tmp_path, n_sup=2)
    counts = source.class_pixel_counts()
    raw = written["train"][sorted(written["train"])[1]]
    assert counts[1].tolist() == np.bincount(raw[raw != 11].ravel(), minlength=11).tolist()
    manifest = json.loads((tmp_path / "prepared" / records.MANIFEST).read_text())
    assert manifest["splits"]["test"]["names"] == sorted(written["test"])
    assert manifest["splits"]["train"]["sizes"][0] == [24, 32]
