"""The toy's training step against the same step written in PyTorch (issue 18, item 6).

  .venv/bin/python -m benchmarks.toy_vs_torch compare --steps 300
  .venv/bin/python -m benchmarks.toy_vs_torch train --seed 1 --num_epochs 40 --out runs/toy_torch/s1.json

`compare` starts our `ToyTrainer` and a PyTorch MLP from the same weights, feeds both the same
labelled and unlabelled batches and the same perturbation noise, and prints how far their students,
teachers and losses drift apart, step by step. Dropout is off in both, or with --dropout on in the
supervised pass with the same masks on both sides; everything else is the `semisup_nogap_contours`
setting. A gap that
grows past float32 rounding names a difference in the step itself.

`train` runs the whole toy in PyTorch, as the authors' loop does (torch's Linear
initialisation, torch.optim.Adam, the EMA of every weight, the contour constraint through
`grid_sample`), on our data (`semiseg_tf.paper.toy2d.data`) and scores it with our `evaluate`, so its
figures stand beside `python -m semiseg_tf.paper.toy2d` runs.

Needs torch (the `test` extra installs the CPU build).
"""
import argparse
import json
import math
import os
import time

import numpy as np


# The `semisup_nogap_contours` recipe (flags/toy2d/semisup_nogap_contours.flags) and the defaults
# it leaves alone.
SETTING = dict(region_erode_radius=0, img_noise_std=2.0, perturb_px=30.0, contour_range=4.0,
               conf_thresh=0.97, cons_weight=1.0, learning_rate=2e-4, teacher_alpha=0.99,
               batch=512, hidden=512, n_hidden=3)


def torch_mlp(dropout):
    import torch
    layers, width = [], 2
    for _ in range(SETTING["n_hidden"]):
        layers += [torch.nn.Linear(width, SETTING["hidden"]), torch.nn.ReLU()]
        width = SETTING["hidden"]
    if dropout:
        layers.append(torch.nn.Dropout(0.5))
    layers.append(torch.nn.Linear(width, 2))
    return torch.nn.Sequential(*layers)


def torch_linears(net):
    import torch
    return [m for m in net if isinstance(m, torch.nn.Linear)]


class TorchToy:
    """The authors' step for the logits_var loss, mean teacher, no batch norm, and
    --cons_no_dropout (the consistency passes without dropout, the supervised pass with it)."""

    def __init__(self, distance_map, dropout, seed):
        import torch
        torch.manual_seed(seed)
        self.torch = torch
        self.student, self.teacher = torch_mlp(dropout), torch_mlp(dropout)
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=SETTING["learning_rate"])
        self.dropout = dropout
        self.dropout_mask = None
        self.distance_map = torch.tensor(distance_map[None, None], dtype=torch.float32)
        self.scale = SETTING["perturb_px"] / 512 * 2

    def forward(self, net, x, use_dropout):
        # The authors' `forward(x, use_dropout)`: the hidden layers, dropout only when asked (with
        # `self.dropout_mask` set, that mask, scaled, instead of a random one).
        for module in net:
            if isinstance(module, self.torch.nn.Dropout):
                if not use_dropout:
                    continue
                if self.dropout_mask is not None:
                    x = x * self.torch.tensor(self.dropout_mask) * 2.0
                    continue
            x = module(x)
        return x

    def contour_weight(self, points, perturbed):
        """grid_sample (bilinear, zeros, align_corners=False) of the signed distance map at both
        points; 1 where the two distances differ by at most the contour range."""
        torch = self.torch
        grid = torch.stack([torch.stack([points[:, 1], points[:, 0]], 1),
                            torch.stack([perturbed[:, 1], perturbed[:, 0]], 1)])[None]
        d = torch.nn.functional.grid_sample(self.distance_map, grid, mode="bilinear",
                                            padding_mode="zeros", align_corners=False)[0, 0]
        return ((d[0] - d[1]) ** 2 <= SETTING["contour_range"] ** 2).float()

    def step(self, sup_x, sup_y, unsup_x, noise):
        torch = self.torch
        sup_x = torch.tensor(sup_x, dtype=torch.float32)
        sup_y = torch.tensor(sup_y, dtype=torch.long)
        unsup_x = torch.tensor(unsup_x, dtype=torch.float32)
        perturbed = unsup_x + torch.tensor(noise, dtype=torch.float32) * self.scale
        self.student.train()
        self.teacher.train()
        self.optimizer.zero_grad()
        sup_loss = torch.nn.functional.cross_entropy(
            self.forward(self.student, sup_x, self.dropout), sup_y)
        target = self.forward(self.teacher, unsup_x, False).detach()
        student = self.forward(self.student, perturbed, False)
        confident = (torch.softmax(target, 1).max(1)[0] >= SETTING["conf_thresh"]).float()
        weight = self.contour_weight(unsup_x, perturbed)
        per_sample = ((student - target) ** 2).mean(1) * confident * weight
        cons_loss = per_sample.sum() / weight.sum()
        (sup_loss + SETTING["cons_weight"] * cons_loss).backward()
        self.optimizer.step()
        with torch.no_grad():
            alpha = SETTING["teacher_alpha"]
            for t, s in zip(self.teacher.state_dict().values(), self.student.state_dict().values()):
                t.mul_(alpha).add_(s * (1 - alpha))
        return float(sup_loss.detach()), float(cons_loss.detach()), float(confident.mean())

    def probability(self, points, batch=65536):
        torch = self.torch
        self.teacher.eval()
        with torch.no_grad():
            out = [torch.softmax(self.teacher(torch.tensor(points[i:i + batch], dtype=torch.float32)),
                                 1)[:, 1].numpy() for i in range(0, len(points), batch)]
        return np.concatenate(out)


def keras_trainer(toy, dropout, seed):
    from semiseg_tf.paper.toy2d import data, model
    params = model.ToyParams(model="mean_teacher", cons_weight=SETTING["cons_weight"],
                             conf_thresh=SETTING["conf_thresh"], cons_loss_fn="logits_var",
                             cons_dropout=False, perturb_std=(SETTING["perturb_px"] / 256,) * 2,
                             teacher_alpha=SETTING["teacher_alpha"],
                             learning_rate=SETTING["learning_rate"])

    def constraint(points, perturbed):
        return data.contour_constraint(toy.distance_map, points, perturbed, SETTING["contour_range"])
    return model.ToyTrainer(params, dict(n_hidden=SETTING["n_hidden"], hidden_size=SETTING["hidden"],
                                         batch_norm=False, dropout=dropout), seed, constraint)


def paired_layers(torch_net, keras_net):
    """(torch Linear, Keras Dense) pairs, input to output."""
    return zip(torch_linears(torch_net), [layer for layer in keras_net.layers if layer.weights])


def copy_torch_to_keras(torch_net, keras_net):
    for linear, layer in paired_layers(torch_net, keras_net):
        layer.kernel.assign(linear.weight.detach().numpy().T)
        layer.bias.assign(linear.bias.detach().numpy())


def max_gap(torch_net, keras_net):
    """Largest |torch - keras| over every weight, and the largest weight magnitude."""
    gap, size = 0.0, 0.0
    for linear, layer in paired_layers(torch_net, keras_net):
        for a, b in ((linear.weight.detach().numpy().T, layer.kernel.numpy()),
                     (linear.bias.detach().numpy(), layer.bias.numpy())):
            gap, size = max(gap, float(np.abs(a - b).max())), max(size, float(np.abs(a).max()))
    return gap, size


def keras_noise(trainer, shape):
    """The perturbation noise our step is about to draw (its stateless seed, read, not advanced)."""
    import tensorflow as tf
    return tf.random.stateless_normal(shape, trainer._noise_seed.read_value(), dtype=tf.float64).numpy()


def batches(rng, toy, labelled_order, order, i):
    """Iteration `i`'s batches, drawn as `python -m semiseg_tf.paper.toy2d` draws them."""
    from semiseg_tf.paper.toy2d import data
    batch = SETTING["batch"]
    sup, labelled_order = data.next_labelled_batch(rng, labelled_order, len(toy.labelled_x), batch)
    unsup = order[i * batch:(i + 1) * batch]
    return toy.labelled_x[sup], toy.labelled_y[sup], toy.unlabelled_x[unsup], labelled_order


def share_dropout_masks(trainer):
    """Makes our student's dropout multiply by a mask we set (a variable) instead of drawing one,
    so that both sides can drop the same units. Returns the variable ([batch, hidden], 0 or 1)."""
    import tensorflow as tf
    mask = tf.Variable(tf.ones((SETTING["batch"], SETTING["hidden"])), trainable=False)
    layer = trainer.student.get_layer("dropout")
    layer.call = lambda inputs, training=False: inputs * mask * 2.0 if training else inputs
    return mask


def compare(args):
    from semiseg_tf.paper.toy2d import data
    toy = data.load(SETTING["region_erode_radius"], SETTING["img_noise_std"], args.seed)
    reference = TorchToy(toy.distance_map, dropout=args.dropout, seed=args.seed)
    ours = keras_trainer(toy, dropout=args.dropout, seed=args.seed)
    mask = share_dropout_masks(ours) if args.dropout else None
    mask_rng = np.random.RandomState(args.seed + 2000)
    copy_torch_to_keras(reference.student, ours.student)
    copy_torch_to_keras(reference.teacher, ours.teacher)
    rng = np.random.RandomState(args.seed)
    order, labelled_order = rng.permutation(len(toy.unlabelled_x)), np.zeros(0, np.int64)
    print("step  student gap  teacher gap  |w|max   sup loss torch/ours   cons loss torch/ours")
    for step in range(1, args.steps + 1):
        i = (step - 1) % math.ceil(len(order) / SETTING["batch"])
        sup_x, sup_y, unsup_x, labelled_order = batches(rng, toy, labelled_order, order, i)
        noise = keras_noise(ours, unsup_x.shape)
        if mask is not None:
            reference.dropout_mask = (mask_rng.uniform(size=mask.shape) >= 0.5).astype(np.float32)
            mask.assign(reference.dropout_mask)
        t = reference.step(sup_x, sup_y, unsup_x, noise)
        o = {k: float(v) for k, v in ours.step(sup_x, sup_y, unsup_x).items()}
        if step % args.every == 0 or step == 1:
            s_gap, size = max_gap(reference.student, ours.student)
            t_gap, _ = max_gap(reference.teacher, ours.teacher)
            print(f"{step:5d}  {s_gap:.2e}     {t_gap:.2e}     {size:.3f}   "
                  f"{t[0]:.5f}/{o['sup_loss']:.5f}     {t[1]:.6f}/{o['cons_loss']:.6f}", flush=True)


def train(args):
    import torch
    from semiseg_tf.paper.toy2d import data, evaluate
    torch.set_num_threads(args.threads)
    toy = data.load(SETTING["region_erode_radius"], SETTING["img_noise_std"], args.seed)
    reference = TorchToy(toy.distance_map, dropout=True, seed=args.seed)
    rng = np.random.RandomState(args.seed)
    noise_rng = np.random.RandomState(args.seed + 1000)
    count, labelled_order = len(toy.unlabelled_x), np.zeros(0, np.int64)
    iterations = math.ceil(count / SETTING["batch"])
    for epoch in range(1, args.num_epochs + 1):
        start, totals = time.perf_counter(), np.zeros(3)
        order = rng.permutation(count)
        for i in range(iterations):
            sup_x, sup_y, unsup_x, labelled_order = batches(rng, toy, labelled_order, order, i)
            totals += reference.step(sup_x, sup_y, unsup_x, noise_rng.normal(size=unsup_x.shape))
        sup, cons, conf = totals / iterations
        print(f"epoch {epoch}/{args.num_epochs}  sup {sup:.4f}  cons {cons:.5f}  conf {conf:.3f}  "
              f"{time.perf_counter() - start:.1f}s", flush=True)
    grid = evaluate.grid_points(toy.region.shape)
    probability = reference.probability(grid).reshape(toy.region.shape)
    scores = evaluate.json_safe(evaluate.boundary_scores(probability >= 0.5, toy.region,
                                                         toy.distance_map))
    scores["class1_share"] = float((probability >= 0.5).mean())
    print(json.dumps(scores, indent=1))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"seed": args.seed, "epochs": args.num_epochs, **scores}, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("compare", help="same weights, batches and noise: how far the steps drift")
    c.add_argument("--steps", type=int, default=300)
    c.add_argument("--every", type=int, default=25, help="print every N steps")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--dropout", action="store_true",
                   help="dropout in the supervised pass, the same masks on both sides")
    t = sub.add_parser("train", help="the whole toy in PyTorch, scored with our evaluate")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--num_epochs", type=int, default=40)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--out", default=None, help="write the scores here (JSON)")
    args = parser.parse_args()
    (compare if args.mode == "compare" else train)(args)


if __name__ == "__main__":
    main()
