"""The results harness (benchmarks/): which runs it reuses, and the text it writes."""
import io
import json
import os

import pytest

from benchmarks import harness, tables
from conftest import TINY_RUN


def test_a_finished_run_is_reused_only_while_its_code_commit_is_the_same(tmp_path, monkeypatch):
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text("".join(f"--{k}={v}\n" for k, v in TINY_RUN.items()))
    monkeypatch.setattr(harness, "code_commit", lambda: "abc1234")
    run = harness.Run(str(tmp_path / "runs"), "tiny", str(flagfile), 0)
    log = io.StringIO()
    first = run.train(log=log)
    assert "tiny seed 0: trained in" in log.getvalue() and 0 <= first["miou"] <= 1
    record = run.record()
    assert record["commit"] == "abc1234" and record["threads"] == harness.threads()
    assert record["command"][-3:] == [f"--flagfile={flagfile}", "--seed=0",
                                      f"--workdir={run.workdir}"]
    log = io.StringIO()
    assert run.train(log=log) == first and log.getvalue() == ""           # reused, not trained
    monkeypatch.setattr(harness, "code_commit", lambda: "def5678")        # the code changed
    assert run.finished() is None
    log = io.StringIO()
    again = run.train(log=log)
    assert "trained in" in log.getvalue() and run.record()["commit"] == "def5678"
    assert again["miou"] == first["miou"]          # the same code gives the same digits


def test_tables_are_written_between_their_marks_only(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text("before\n<!-- results:t -->\nold\n<!-- /results:t -->\nafter\n")
    harness.replace_region(str(document), "t", "new\ntable")
    assert document.read_text() == ("before\n<!-- results:t -->\nnew\ntable\n<!-- /results:t -->\n"
                                    "after\n")
    with pytest.raises(SystemExit, match="no <!-- results:other -->"):
        harness.replace_region(str(document), "other", "x")


def test_the_gain_is_the_mean_and_sample_std_of_the_per_seed_gains():
    table = tables.Table(rows=(tables.Row("a", "a.flags"), tables.Row("b", "b.flags")),
                         seeds=(0, 1), renderers=())
    metrics = {("a", 0): {"miou": 0.50}, ("b", 0): {"miou": 0.60},
               ("a", 1): {"miou": 0.50}, ("b", 1): {"miou": 0.70}}
    # gains 10 and 20 points: mean 15, sample std sqrt(((10-15)^2 + (20-15)^2) / 1) = 7.07
    assert tables.gain_sentence(table, metrics) == (
        "b - a: +15.00 ± 7.07 mIoU points over seeds 0, 1 (per seed: +10.00, +20.00).")


def test_a_paper_recipe_run_on_the_embedded_dataset_writes_its_published_vs_measured_row(
        tmp_path, monkeypatch):
    """`tables published` with the embedded dataset standing in for Pascal VOC: one row per recipe,
    the header's published figure beside the seeds' mIoU; a second run of the same recipe replaces
    its row, another recipe adds one."""
    monkeypatch.setattr(harness, "code_commit", lambda: "abc1234")
    document = tmp_path / "doc.md"
    document.write_text("x\n<!-- results:published -->\nnone yet\n<!-- /results:published -->\n")
    stand_in = ["--", *(f"--{k}={v}" for k, v in TINY_RUN.items()), "--train_steps=2"]

    def published(recipe, *seeds):
        tables.published.main([f"--recipe={recipe}", "--data_dir=/data/VOC2012",
                               f"--runs={tmp_path / 'runs'}", f"--document={document}",
                               "--seeds", *map(str, seeds), *stand_in])
        return document.read_text().split("<!-- results:published -->\n")[1].split("\n<!--")[0]

    pascal = "flags/paper/pascal_deeplab2/cutmix_106.flags"
    table = published(pascal, 1, 2)
    header, rule, row = table.splitlines()
    assert header.startswith("| recipe | published mIoU | measured mIoU, per seed |")
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    runs = tmp_path / "runs" / "published" / "paper"
    miou = [100 * json.loads((runs / "pascal_deeplab2" / "cutmix_106" / f"seed_{seed}" /
                              "metrics.json").read_text())["miou"] for seed in (1, 2)]
    assert cells[:4] == [f"`{pascal}`", "53.79", f"{miou[0]:.2f}, {miou[1]:.2f}",
                         "{:.2f} ± {:.2f}".format(*harness.mean_std(miou))]
    assert cells[4] == "abc1234" and "--data_dir=..." in cells[7]
    # Cityscapes' cells differ by their labelled split: the seed goes to --split_seed too.
    cityscapes = "flags/paper/cityscapes_deeplab2/cutmix_372.flags"
    lines = published(cityscapes, 12345).splitlines()
    assert [line.split("`")[1] for line in lines[2:]] == [cityscapes, pascal]
    record = json.loads((runs / "cityscapes_deeplab2" / "cutmix_372" / "seed_12345" /
                         harness.RECORD).read_text())
    assert "--split_seed=12345" in record["command"] and "| 60.34 |" in lines[2]
    assert len(published(pascal, 1, 2).splitlines()) == 4          # replaced, reused


def test_each_labelling_round_adds_what_select_chose_from_the_images_not_labelled_yet(
        tmp_path, monkeypatch):
    from benchmarks import labelling
    root = tmp_path / "labelling"
    (root / "data" / "images").mkdir(parents=True)
    for k in range(12):
        (root / "data" / "images" / f"train_{k:04d}.png").write_bytes(b"png")
    monkeypatch.setattr(labelling, "SEEDS", (0, 1))
    labelling.start_lists(str(root))
    starts = [(root / "start" / f"labelled_10_seed_{s}.txt").read_text().split() for s in (0, 1)]
    assert starts[0] != starts[1] and all(len(set(s)) == 10 for s in starts)
    pools = []

    def fake_select(command, **_):   # chooses the two last names of the pool, as select would
        pool = next(a.split("=", 1)[1] for a in command if a.startswith("--pool="))
        to_label = next(a.split("=", 1)[1] for a in command if a.startswith("--to_label="))
        pools.append(sorted(os.listdir(pool)))
        os.makedirs(to_label)
        with open(os.path.join(to_label, "labelled.txt"), "w") as f:
            f.write("".join(n[:-4] + "\n" for n in pools[-1][-2:]))
    monkeypatch.setattr(labelling.subprocess, "run", fake_select)
    monkeypatch.setattr(labelling, "BUDGET", 2)
    chain = labelling.Chain(str(root), "entropy", 1)
    os.makedirs(chain.folder)
    chain.select(0, log=None)
    first = open(chain.split_file(1)).read().split()
    assert pools[0] == sorted(f"{n}.png" for n in labelling.names(chain.data) if n not in starts[1])
    assert first[:10] == starts[1] and len(set(first)) == 12
    assert chain.run(1).extra[-2:] == (f"--split_file={chain.split_file(1)}", "--n_sup=12")
    chain.select(0, log=None)                  # written already: kept, select not run again
    assert len(pools) == 1


def test_the_labelling_plot_draws_each_strategy_in_its_colour(tmp_path):
    from PIL import Image

    from benchmarks import labelling
    path = tmp_path / "curves.png"
    labelling.draw({"random": [(50.0, 1.0), (60.0, 1.0)], "entropy": [(50.0, 0.0), (70.0, 0.0)]},
                   [10, 20], str(path))
    image = Image.open(path).convert("RGB")
    assert image.size == (640, 400)
    colours = {image.getpixel((x, y)) for x in range(60, 490) for y in range(20, 360)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours     # random's, entropy's
