"""Benchmark: the class-distance study's speed at the paper's size, in anchor-image pairs per second.

  .venv/bin/python -m benchmarks.analysis --images 4 --anchors 32 --batch 32

Runs `class_distances.study` with 225x225 patches on Cityscapes-sized images (1024x512, half
resolution as the paper's) made up for the purpose (smooth random colours, block labels): the cost
depends on the sizes only. Prints pairs per second and the time this implies for the paper's study,
1,000 anchors against 2,975 images, on this machine. The first image is not timed (TensorFlow's
FFT set-up).
"""
import argparse
import time

import numpy as np



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4,
                        help="images timed (one more is made and left untimed)")
    parser.add_argument("--anchors", type=int, default=32, help="anchor patches")
    parser.add_argument("--batch", type=int, default=32, help="anchors per FFT batch")
    parser.add_argument("--patch_size", type=int, default=225, help="odd patch side (paper: 225)")
    parser.add_argument("--height", type=int, default=512, help="image height (paper: 512)")
    parser.add_argument("--width", type=int, default=1024, help="image width (paper: 1024)")
    args = parser.parse_args()
    import cv2
    import tensorflow as tf

    from semiseg_tf.paper.analysis import class_distances as cd

    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(args.images + 1):
        low = rng.random((8, 16, 3)).astype(np.float32)
        images.append((cv2.resize(low, (args.width, args.height)) * 255).astype(np.uint8))
        label = np.zeros((args.height, args.width), np.uint8)
        for k in range(6):
            y, x = rng.integers(0, args.height - 150), rng.integers(0, args.width - 300)
            label[y:y + 150, x:x + 300] = k + 1
        labels.append(label)
    anchors = cd.choose_anchors(labels[:1], args.patch_size, args.anchors, seed=0)
    warm = cd.ImageSet(lambda i: (images[i], labels[i]), 2)
    cd.study(warm, anchors[:min(len(anchors), args.batch)], args.patch_size, args.batch)
    timed = cd.ImageSet(lambda i: (images[i], labels[i]), args.images + 1)
    start = time.perf_counter()
    cd.study(timed, anchors, args.patch_size, args.batch)
    seconds = time.perf_counter() - start
    pairs = len(anchors) * args.images        # image 0 holds the anchors: not searched
    rate = pairs / seconds
    paper = 1000 * 2975 / rate
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"{device}: {len(anchors)} anchors x {args.images} images of {args.width}x{args.height}, "
          f"{args.patch_size} px patches, batch {args.batch}: {rate:.2f} anchor-image pairs/s; "
          f"the paper's 1,000 x 2,975 would take {paper / 3600:.1f} h ({paper / 86400:.1f} days)")


if __name__ == "__main__":
    main()
