"""Measurement: how far VAT's adversarial direction at the authors' probe is from the exact one.

  .venv/bin/python -m benchmarks.vat_probe_cosine --arch deeplab2_small --size 321
  .venv/bin/python -m benchmarks.vat_probe_cosine --run runs/some_deeplab2_small_run --size 321
  .venv/bin/python -m benchmarks.vat_probe_cosine --arch deeplab2_resnet101 --size 321 --batch 1

VAT's direction is one power iteration: the gradient, at a random probe d, of the KL divergence
between the direction network's outputs on x and on x + d. For a small probe that gradient is the
Hessian times d (the first-order regime); too small a probe and float32 rounding of the outputs
drowns it. The authors' probe has norm 1e-6 H W / 1000 per sample (1.03e-4 at 321x321, 1.9e-7 per
element); ours (--vat_probe_scale) 1e-2 per element.

The exact direction (the Hessian-probe product) cannot be computed through these networks here: TF
has no second derivative of bilinear resizing, and the networks' layers compute in float32. So the
reference is the direction at a probe of 1e-3 per element; that ours (1e-2) agrees with it to a
cosine near 1 shows both are in the first-order regime and far above rounding. The table gives each
probe's cosine with the reference, per image, in the network's inference mode (the trainer's).
The images are the embedded synthetic dataset's, at --size, normalised with ImageNet's statistics.
"""
import argparse
import sys

import numpy as np



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="deeplab2_small", help="a registered network (random "
                        "weights, the network's own initialisation)")
    parser.add_argument("--run", help="a run folder: its teacher instead of --arch's random weights")
    parser.add_argument("--size", type=int, default=321, help="image height and width")
    parser.add_argument("--batch", type=int, default=2, help="images (each its own probe)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from semiseg_tf import models, run_info, trained
    from semiseg_tf.data import base, pipeline, synthetic
    from semiseg_tf.semisup import methods

    keras.utils.set_random_seed(args.seed)
    if args.run:
        info = run_info.load(args.run)
        network, checkpoint, step = trained.load_network(args.run, info, "teacher")
        what = f"the teacher of {args.run} (step {step}, {info.arch})"
    else:
        network = models.build(args.arch, 21)
        what = f"{args.arch} with random weights (its own initialisation)"
    source = synthetic.SyntheticSource(args.batch, 1, args.size, seed=args.seed)
    images = pipeline.normalise(tf.constant(source.train_images[:args.batch]),
                                base.IMAGENET_MEAN, base.IMAGENET_STD)
    noise = tf.random.stateless_normal(images.shape, [args.seed, 1])

    def direction(**probe):
        return methods.vat.VAT(loss_fn="kld", **probe).direction(network, images, noise).numpy()

    def cosine(a, b):
        return (a * b).sum(axis=(1, 2, 3)) / np.sqrt((a * a).sum(axis=(1, 2, 3))
                                                      * (b * b).sum(axis=(1, 2, 3)))

    reference = direction(probe_scale=1e-3)
    probes = [("ours, 1e-2 per element (the --vat_probe_scale default)", dict(probe_scale=1e-2)),
              ("1e-4 per element", dict(probe_scale=1e-4)),
              ("1e-5 per element", dict(probe_scale=1e-5)),
              ("the authors', 1e-6 H W / 1000 (--vat_authors_probe)", dict(authors_probe=True))]
    authors_norm = 1e-6 * args.size * args.size / 1000
    print(f"{what}, {args.batch} images {args.size}x{args.size}; the authors' probe norm "
          f"{authors_norm:.3g} ({authors_norm / np.sqrt(3 * args.size ** 2):.2g} per element); "
          "the reference: the direction at 1e-3 per element")
    print("| probe | cosine with the reference direction, per image |")
    print("|---|---|")
    for name, probe in probes:
        print(f"| {name} | {', '.join(f'{c:.4f}' for c in cosine(direction(**probe), reference))} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
