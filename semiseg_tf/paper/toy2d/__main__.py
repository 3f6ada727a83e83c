"""The paper's 2-D toy experiment: consistency regularisation with and without a gap between classes.

  python -m semiseg_tf.paper.toy2d --flagfile=flags/toy2d/semisup_gap.flags --workdir=runs/toy2d/semisup_gap

Writes into --workdir: renders/epoch_NNNNN.png (the decision function every --render_every epochs),
decision.png (the final one), decision.npz (the final class-1 probability on the 512x512 grid, to
score again later), flags.txt and metrics.json (boundary scores on the whole grid, see
evaluate.py, and the authors' error rate on the generated points), and checkpoint/ (the state after
the last finished epoch). Running the same command again resumes a killed run where it was; a larger
--num_epochs extends a finished one. `--help` explains every flag.
"""
import json
import math
import os
import sys
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (required).")
_SEED = flags.DEFINE_integer("seed", 12345, "Seed of the weights, the data jitter, the batch order "
                             "and the perturbations.")
_EPOCHS = flags.DEFINE_integer("num_epochs", 100, "Epochs; an epoch is one pass over the unlabelled "
                               "points in batches of --batch_size.")
_BATCH = flags.DEFINE_integer("batch_size", 512, "Points per labelled batch (drawn from the 10 "
                              "labelled points, repeated) and per unlabelled batch.")
_LR = flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate.")
_MODEL = flags.DEFINE_enum("model", "mean_teacher", ["mean_teacher", "pi"], "mean_teacher: targets "
                           "from an EMA teacher (evaluated); pi: the student's own prediction on the "
                           "clean point, with its gradient.")
_TEACHER_ALPHA = flags.DEFINE_float("teacher_alpha", 0.99, "EMA decay of the mean teacher.")
_CONS_WEIGHT = flags.DEFINE_float("cons_weight", 10.0, "Consistency weight; 0 trains on the 10 "
                                  "labelled points only.")
_CONF_THRESH = flags.DEFINE_float("conf_thresh", 0.97, "A point's consistency counts only where the "
                                  "teacher's probability is at least this (0: always).")
_CONF_AVG = flags.DEFINE_boolean("conf_avg", False, "Scale every point's consistency by the batch's "
                                 "confident share instead of masking per point.")
_CONS_LOSS = flags.DEFINE_enum("cons_loss_fn", "var", ["var", "bce", "logits_var"], "Consistency "
                               "loss, mean over the two classes: squared probability difference, "
                               "binary cross-entropy, or squared logit difference.")
_PERTURB = flags.DEFINE_string("perturb_noise_std", "6.0", "Std of the Gaussian perturbation of the "
                               "unlabelled points, in pixels of the 512x512 image: one value or 'y,x'.")
_RANGE = flags.DEFINE_float("dist_contour_range", 0.0, "If > 0, a perturbed point counts only if its "
                            "signed distance to the true boundary changes by at most this many "
                            "pixels (the paper's constrained perturbation).")
_ERODE = flags.DEFINE_integer("region_erode_radius", 35, "Erode both class regions by this many "
                              "pixels before drawing unlabelled points: 35 leaves an empty band "
                              "between the classes, 0 none.")
_IMG_NOISE = flags.DEFINE_float("img_noise_std", 2.0, "Jitter of the unlabelled points, pixels.")
_N_HIDDEN = flags.DEFINE_integer("n_hidden", 3, "Hidden layers of the MLP.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 512, "Units per hidden layer.")
_NORM = flags.DEFINE_enum("norm_layer", "batch_norm", ["batch_norm", "none"], "Normalisation after "
                          "each hidden layer.")
_DROPOUT = flags.DEFINE_boolean("dropout", True, "Dropout(0.5) before the output layer.")
_CONS_NO_DROPOUT = flags.DEFINE_boolean("cons_no_dropout", False, "Run the consistency passes in "
                                        "inference mode: no dropout (the supervised pass keeps it) "
                                        "and, with --norm_layer=batch_norm, moving statistics (the "
                                        "authors' flag kept batch statistics; their runs that use it "
                                        "have no batch norm).")
_RENDER_EVERY = flags.DEFINE_integer("render_every", 10, "Write renders/epoch_NNNNN.png every N "
                                     "epochs (0: only the final decision.png).")


class ToyFlagError(ValueError):
    pass


def _perturb_std():
    try:
        values = [float(v) for v in _PERTURB.value.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 0:
        raise ToyFlagError(f"--perturb_noise_std={_PERTURB.value!r}: expected one or two (y,x) "
                           "non-negative numbers of pixels")
    return tuple(v / 512 * 2 for v in (values * 2)[:2])


def _check_flags():
    if not _WORKDIR.value:
        raise ToyFlagError("--workdir: an output folder is required")
    for flag in (_EPOCHS, _BATCH, _N_HIDDEN, _HIDDEN):
        if flag.value <= 0:
            raise ToyFlagError(f"--{flag.name}={flag.value}: must be positive")
    for flag in (_RANGE, _IMG_NOISE, _CONS_WEIGHT, _ERODE, _RENDER_EVERY):
        if flag.value < 0:
            raise ToyFlagError(f"--{flag.name}={flag.value}: must be >= 0")
    if not 0 <= _CONF_THRESH.value <= 1:
        raise ToyFlagError(f"--conf_thresh={_CONF_THRESH.value}: must lie in [0, 1]")


# Flags that may change when a run is resumed: more epochs extend it, renders are only pictures.
_RESUME_MAY_CHANGE = ("num_epochs", "render_every")


def _check_resumable(workdir, checkpoint_dir, flag_lines):
    """A workdir with a checkpoint resumes only under the same flags (but those above)."""
    if not os.path.exists(os.path.join(checkpoint_dir, "checkpoint")):
        return
    try:
        with open(os.path.join(workdir, "flags.txt")) as f:
            before = f.read().splitlines()
    except OSError:
        before = []

    def significant(lines):
        return {line for line in lines if line.split("=")[0].lstrip("-") not in _RESUME_MAY_CHANGE}
    changed = sorted(significant(flag_lines) ^ significant(before))
    if changed:
        raise ToyFlagError(f"--workdir={workdir}: holds a run with other flags (differing: "
                           f"{' '.join(changed)}); resume it with its flags.txt or use a new "
                           "--workdir")


def run(out=sys.stdout):
    """Trains and writes the outputs; returns the metrics dict."""
    import numpy as np
    import tensorflow as tf

    from semiseg_tf import checkpoints
    from semiseg_tf.files import atomic_savez, atomic_write_bytes, png_bytes
    from semiseg_tf.paper.toy2d import data, evaluate, model

    _check_flags()
    workdir = os.path.abspath(_WORKDIR.value)
    os.makedirs(os.path.join(workdir, "renders"), exist_ok=True)
    holders = [v for v in globals().values() if isinstance(v, flags.FlagHolder)]
    flag_lines = [flags.FLAGS[h.name].serialize() for h in holders if h.value is not None]
    checkpoint_dir = os.path.join(workdir, "checkpoint")
    _check_resumable(workdir, checkpoint_dir, flag_lines)
    atomic_write_bytes(os.path.join(workdir, "flags.txt"), "".join(
        line + "\n" for line in flag_lines).encode())
    toy = data.load(_ERODE.value, _IMG_NOISE.value, _SEED.value)
    constraint = None
    if _RANGE.value > 0:
        distance_map, contour_range = toy.distance_map, _RANGE.value

        def constraint(points, perturbed):
            return data.contour_constraint(distance_map, points, perturbed, contour_range)
    params = model.ToyParams(
        model=_MODEL.value, cons_weight=_CONS_WEIGHT.value, conf_thresh=_CONF_THRESH.value,
        conf_avg=_CONF_AVG.value, cons_loss_fn=_CONS_LOSS.value,
        cons_dropout=_DROPOUT.value and not _CONS_NO_DROPOUT.value, perturb_std=_perturb_std(),
        teacher_alpha=_TEACHER_ALPHA.value, learning_rate=_LR.value)
    trainer = model.ToyTrainer(params, dict(n_hidden=_N_HIDDEN.value, hidden_size=_HIDDEN.value,
                                            batch_norm=_NORM.value == "batch_norm",
                                            dropout=_DROPOUT.value),
                               _SEED.value, constraint)
    if len(toy.unlabelled_x) == 0:
        raise ToyFlagError(f"--region_erode_radius={_ERODE.value}: no points are left after erosion")
    grid = evaluate.grid_points(toy.region.shape)
    rng = np.random.RandomState(_SEED.value)
    count, batch = len(toy.unlabelled_x), _BATCH.value
    iterations = math.ceil(count / batch)
    labelled_order = np.zeros(0, np.int64)
    print(f"toy2d: {count} unlabelled points (erosion {_ERODE.value} px), 10 labelled, "
          f"{iterations} iterations per epoch, {_EPOCHS.value} epochs; workdir {workdir}",
          file=out, flush=True)
    # One checkpoint per epoch (about 8 MB; the manager names it in its state file last, so a kill
    # mid-save leaves the previous one in force) holds the networks, the optimiser, the noise seed
    # and the loop's own state.
    manager = tf.train.CheckpointManager(trainer.run_checkpoint.checkpoint, checkpoint_dir,
                                         max_to_keep=1)
    done_epochs, train_seconds = 0, 0.0
    if manager.latest_checkpoint:
        try:
            exact = trainer.run_checkpoint.restore(manager.latest_checkpoint)
        except checkpoints.CheckpointMismatch as error:
            raise ToyFlagError(f"--workdir={workdir}: {error}; use a new --workdir")
        if not exact:
            print(checkpoints.FRESH_DROPOUT_NOTE, file=out, flush=True)
        state = json.loads(trainer.loop_state.numpy().decode())
        done_epochs, train_seconds = state["epoch"], state["train_seconds"]
        rng.set_state(("MT19937", np.array(state["rng_key"], np.uint32), *state["rng_rest"]))
        labelled_order = np.array(state["labelled_order"], np.int64)
        print(f"resuming after epoch {done_epochs} from {manager.latest_checkpoint}", file=out,
              flush=True)

    def write_render(epoch, final=False):
        probability = trainer.predict_probability(grid).reshape(toy.region.shape)
        picture = evaluate.render(probability, toy, f"epoch {epoch}")
        atomic_write_bytes(os.path.join(workdir, "renders", f"epoch_{epoch:05d}.png"), png_bytes(picture))
        if final:
            atomic_write_bytes(os.path.join(workdir, "decision.png"), png_bytes(picture))
            atomic_savez(os.path.join(workdir, "decision.npz"),
                         probability=probability.astype(np.float32))
        return probability

    for epoch in range(done_epochs + 1, _EPOCHS.value + 1):
        epoch_start = time.perf_counter()
        order = rng.permutation(count)
        totals = {}
        for i in range(iterations):
            sup, labelled_order = data.next_labelled_batch(rng, labelled_order,
                                                           len(toy.labelled_x), batch)
            logs = trainer.step(toy.labelled_x[sup], toy.labelled_y[sup],
                                toy.unlabelled_x[order[i * batch:(i + 1) * batch]])
            for name, value in logs.items():
                totals[name] = totals.get(name, 0.0) + float(value)
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        _, key, *rest = rng.get_state()
        trainer.loop_state.assign(json.dumps({
            "epoch": epoch, "train_seconds": train_seconds, "rng_key": key.tolist(),
            "rng_rest": [int(rest[0]), int(rest[1]), float(rest[2])],
            "labelled_order": labelled_order.tolist()}))
        manager.save(checkpoint_number=epoch)
        print(f"epoch {epoch}/{_EPOCHS.value}  sup {totals['sup_loss'] / iterations:.4f}  "
              f"cons {totals['cons_loss'] / iterations:.5f}  conf {totals['conf_rate'] / iterations:.3f}"
              f"  {seconds:.1f}s", file=out, flush=True)
        if _RENDER_EVERY.value and epoch % _RENDER_EVERY.value == 0 and epoch != _EPOCHS.value:
            write_render(epoch)
    probability = write_render(_EPOCHS.value, final=True)
    scores = evaluate.boundary_scores(probability >= 0.5, toy.region, toy.distance_map)
    predicted = trainer.predict_probability(toy.unlabelled_x) >= 0.5
    metrics = {**scores, "authors_error_rate": float(np.mean(predicted != toy.unlabelled_y)),
               "epochs": _EPOCHS.value, "seconds_per_epoch": train_seconds / _EPOCHS.value}
    metrics = evaluate.json_safe(metrics)
    atomic_write_bytes(os.path.join(workdir, "metrics.json"), json.dumps(metrics, indent=2).encode())
    print(f"pixel accuracy {100 * metrics['pixel_accuracy']:.2f}%, within {evaluate.BAND_PX} px of "
          f"the boundary {100 * metrics[f'accuracy_within_{evaluate.BAND_PX}px']:.2f}%, boundary "
          f"distance mean {metrics['predicted_to_true_boundary_px']['mean']} px; "
          f"{workdir}/decision.png", file=out, flush=True)
    return metrics


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
        run()
    except ToyFlagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
