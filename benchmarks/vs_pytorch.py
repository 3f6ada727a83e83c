"""Benchmark: our DeepLab v2 CutMix mean-teacher step against the same iteration in PyTorch.

  .venv/bin/python -m benchmarks.vs_pytorch --torch_python=/path/to/venv-with-torch/bin/python \
      --batch_size 2 --steps 3 --rounds 2

The TensorFlow side is the trainer's own step for flags/paper/pascal_deeplab2/cutmix_106.flags
(benchmarks/recipe_step.py). The PyTorch side is the authors' iteration written out here with
their network (Caffe-style ResNet-101 at output stride 8, batch norm frozen and never
trained, four-branch ASPP as the supplement describes, logits upsampled with align_corners) and
their order of work: the supervised loss's backward pass first, then the teacher on both
unlabelled batches without gradient, the student on the mixed batch and its backward pass, one
Adam step with the backbone at 0.1 of the rate, the EMA. Both on random weights at the paper's
crop (321), one thread per core, each measurement its own process, alternating TensorFlow and
PyTorch `--rounds` times (these machines drift). PyTorch 2.x; torchvision is not needed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "flags", "paper", "pascal_deeplab2", "cutmix_106.flags")


def peak_gib():
    """As harness.peak_gib (not ru_maxrss, which a child inherits from its parent); written out
    because this file also runs alone under a PyTorch environment's interpreter."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 2 ** 20


def torch_step_seconds(batch, crop, steps, threads):
    """In the PyTorch child: {seconds, first, rss_gib}."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, dilation, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)    # Caffe: stride here
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.downsample = downsample

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = F.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))

    class DeepLabV2(nn.Module):
        def __init__(self, classes=21):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.inplanes = 64
            self.layers = nn.Sequential(self._layer(64, 3, 1, 1), self._layer(128, 4, 2, 1),
                                        self._layer(256, 23, 1, 2), self._layer(512, 3, 1, 4))
            self.aspp = nn.ModuleList(nn.Conv2d(2048, classes, 3, 1, d, d) for d in (6, 12, 18, 24))
            for p in self.modules():
                if isinstance(p, nn.BatchNorm2d):
                    p.weight.requires_grad = p.bias.requires_grad = False

        def _layer(self, planes, blocks, stride, dilation):
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride,
                                                     bias=False), nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(self.inplanes, planes, stride, dilation, downsample)]
            self.inplanes = planes * 4
            layers += [Bottleneck(self.inplanes, planes, 1, dilation, None) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def backbone(self):
            return [p for m in [self.conv1, self.layers] for p in m.parameters() if p.requires_grad]

        def forward(self, x):
            size = x.shape[2:]
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1, ceil_mode=True)
            x = self.layers(x)
            x = sum(conv(x) for conv in self.aspp)
            return F.interpolate(x, size, mode="bilinear", align_corners=True)

    student, teacher = DeepLabV2(), DeepLabV2()
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    for net in (student, teacher):
        net.train()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()                                      # --freeze_bn
    backbone = set(map(id, student.backbone()))
    head = [p for p in student.parameters() if p.requires_grad and id(p) not in backbone]
    optimizer = torch.optim.Adam([{"params": student.backbone(), "lr": 3e-6},
                                  {"params": head, "lr": 3e-5}])
    images = torch.randn(batch, 3, crop, crop)
    labels = torch.randint(0, 21, (batch, crop, crop))
    u0, u1 = torch.randn(batch, 3, crop, crop), torch.randn(batch, 3, crop, crop)
    mask = torch.zeros(batch, 1, crop, crop)
    mask[:, :, : crop // 2] = 1.0

    def iteration():
        optimizer.zero_grad()
        F.cross_entropy(student(images), labels, ignore_index=255).backward()
        with torch.no_grad():
            p0, p1 = F.softmax(teacher(u0), 1), F.softmax(teacher(u1), 1)
            target = p0 * (1 - mask) + p1 * mask
            share = (target.max(1)[0] >= 0.97).float().mean()
        predicted = F.softmax(student(u0 * (1 - mask) + u1 * mask), 1)
        (((predicted - target) ** 2).sum(1).mean() * share).backward()
        optimizer.step()
        with torch.no_grad():
            for t, s in zip(teacher.state_dict().values(), student.state_dict().values()):
                if t.dtype.is_floating_point:
                    t.mul_(0.99).add_(s, alpha=0.01)

    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times[1:]), "first": times[0],
            "rss_gib": peak_gib()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch_python", required=True, help="a Python that imports torch")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--crop", type=int, default=321)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--rounds", type=int, default=2, help="TensorFlow, PyTorch, ... this many times")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--child", choices=["torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(torch_step_seconds(args.batch_size, args.crop, args.steps, args.threads)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(args.threads)}
    commands = {
        "tensorflow": [sys.executable, "-m", "benchmarks.recipe_step", RECIPE,
                       "--configs", "float32", f"--batch_size={args.batch_size}",
                       f"--steps={args.steps}", "--", f"--crop_size={args.crop},{args.crop}"],
        "pytorch": [args.torch_python, __file__, "--child=torch", f"--torch_python={args.torch_python}",
                    f"--batch_size={args.batch_size}", f"--crop={args.crop}", f"--steps={args.steps}",
                    f"--threads={args.threads}"],
    }
    results = {name: [] for name in commands}
    for round_ in range(args.rounds):
        for name, command in commands.items():
            done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            if name == "tensorflow":
                # benchmarks.recipe_step prints "CONFIG: JSON" on stderr, then its table.
                line = next(t for t in done.stderr.splitlines() if t.startswith("float32: "))
                result = json.loads(line[len("float32: "):])
            else:
                result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"round {round_ + 1} {name}: {result}", file=sys.stderr, flush=True)
            results[name].append(result)
    print(f"\nDeepLab v2 CutMix mean-teacher step, crop {args.crop}, batch {args.batch_size}, "
          f"{args.threads} threads, median of {args.steps} steps per run, {args.rounds} runs "
          f"alternating, {time.strftime('%Y-%m-%d')}")
    print("| framework | s/step, each run | peak RSS (GiB), each run |")
    print("|---|---|---|")
    for name, runs in results.items():
        seconds = " / ".join(f"{r['seconds']:.2f}" for r in runs)
        memory = " / ".join(f"{r['rss_gib']:.2f}" for r in runs)
        print(f"| {name} | {seconds} | {memory} |")


if __name__ == "__main__":
    main()
