"""How much Cutout and CutMix change a trained network's predictions where their losses count.

  .venv/bin/python -m benchmarks.perturbation_strength --run runs/table_nobn/baseline/seed_0

Feeds embedded-dataset training images to a run's network (inference mode) as the consistency
losses do: Cutout keeps one box (area U(0, 1) of the image) and sets the rest to the mean colour,
its loss counting inside the box; CutMix pastes a box of half the area from a second image, its loss
counting everywhere against the two predictions mixed by the same box. For each, over the pixels
where the loss counts, it prints the mean total-variation distance between the perturbed prediction
and its target, the share of pixels whose most likely class changes, and the same for the pixels at
least 8 px inside the box (Cutout) or from its edge (CutMix). It also prints the network's receptive
field: the extent of the input pixels that the centre pixel's logits depend on.
"""
import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished run folder on the embedded dataset")
    parser.add_argument("--network", default="teacher", choices=["teacher", "student"])
    parser.add_argument("--images", type=int, default=64, help="training images (and masks) used")
    parser.add_argument("--inner", type=int, default=8, help="pixels from the box edge for 'inner'")
    args = parser.parse_args()

    import tensorflow as tf
    from semiseg_tf import run_info, trained
    from semiseg_tf.augment import boxmask
    from semiseg_tf.data import pipeline, synthetic

    info = run_info.load(args.run)
    network, _, step = trained.load_network(args.run, info, args.network)
    source = synthetic.SyntheticSource()
    images = np.stack([source.read_train(tf.constant(i, tf.int64))[0].numpy()
                       for i in range(2 * args.images)])
    # As the input pipeline does: the images as read, standardised (0 is then the mean colour).
    x = pipeline.normalise(tf.constant(images), source.rgb_mean, source.rgb_std)
    xa, xb = x[:args.images], x[args.images:]
    height, width = xa.shape[1:3]

    def probs(batch):
        return tf.nn.softmax(network(batch, training=False), axis=-1).numpy()

    def masks(params, offset):
        return np.stack([boxmask.box_mask(tf.constant([offset + i, 7], tf.int64), height, width,
                                          params).numpy() for i in range(args.images)])

    def inner(mask, inside):
        """Pixels at least `args.inner` px from the box edge, on the `inside` (1) or outside side."""
        region = (mask[..., 0] == inside).astype(np.uint8)
        import cv2
        k = 2 * args.inner + 1
        return np.stack([cv2.erode(r, np.ones((k, k), np.uint8), borderType=cv2.BORDER_REPLICATE)
                         for r in region]).astype(bool)

    def report(name, perturbed, target, where, inner_where):
        tv = 0.5 * np.abs(perturbed - target).sum(-1)
        flips = perturbed.argmax(-1) != target.argmax(-1)
        print(f"{name}: total variation {tv[where].mean():.3f}, class changed {flips[where].mean():.3f}"
              f" ({where.sum()} px); {args.inner}+ px from the edge: {tv[inner_where].mean():.3f}, "
              f"{flips[inner_where].mean():.3f} ({inner_where.sum()} px)")

    pa, pb = probs(xa), probs(xb)
    print(f"{args.run} ({args.network}, step {step}), {args.images} images of {height}x{width}")
    cut = masks(boxmask.BoxMaskParams(prop_range=(0.0, 1.0)), 0)
    report("Cutout (inside the kept box)", probs(xa * cut), pa, cut[..., 0] == 1, inner(cut, 1))
    mix = masks(boxmask.BoxMaskParams(prop_range=(0.5, 0.5)), 1000)
    mixed_target = pa * (1 - mix) + pb * mix
    everywhere = np.ones(mix.shape[:3], bool)
    report("CutMix (everywhere)", probs(xa * (1 - mix) + xb * mix), mixed_target, everywhere,
           inner(mix, 1) | inner(mix, 0))

    # Receptive field: where the gradient of the centre pixel's logits reaches the input.
    probe = tf.Variable(xa[:1])
    with tf.GradientTape() as tape:
        centre = tf.reduce_sum(network(probe, training=False)[0, height // 2, width // 2])
    reach = np.abs(tape.gradient(centre, probe).numpy()[0]).sum(-1) > 0
    rows, cols = np.flatnonzero(reach.any(1)), np.flatnonzero(reach.any(0))
    print(f"receptive field of the centre pixel within the {height}x{width} image: rows "
          f"{rows.min()}-{rows.max()}, columns {cols.min()}-{cols.max()}")


if __name__ == "__main__":
    main()
