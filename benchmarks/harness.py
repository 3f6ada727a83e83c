"""The results harness: trainings in their own processes, reused when finished, and tables of them.

A run is `python -m semiseg_tf.train --flagfile=F --seed=S --workdir=RUNS/NAME/seed_S [extra]`.
Its folder gets `harness.json`: the command, the code commit it ran at, the machine and the thread
count. A finished run is reused only when all of these are those of now; otherwise it is trained
again in a fresh folder, so that every figure of a table comes from the code of one commit on one
kind of machine with one thread count (what makes a run repeatable bit for bit: README,
"Repeatability").
"""
import concurrent.futures
import datetime
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a run's numbers depend on; a commit that changes none of these keeps the runs valid.
CODE_PATHS = ("semiseg_tf", "flags", "setup.cfg")
RECORD = "harness.json"


def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


# Both are constant for one harness process, and every run asks for them several times.
@functools.cache
def code_commit(*outputs):
    """The newest commit that changed the code or the recipes, '+changes' when the work tree has
    changes of its own there (such runs are marked in the tables), apart from the files `outputs`
    (paths from the repository's root) that the caller itself writes there."""
    commit = git("log", "-1", "--format=%h", "--", *CODE_PATHS)
    dirty = git("status", "--porcelain", "--", *CODE_PATHS,
                *(f":(exclude){path}" for path in outputs))
    return commit + ("+changes" if dirty else "")


def peak_gib():
    """This process's peak resident memory in GiB: the kernel's high-water mark of its own memory.
    Not getrusage's ru_maxrss, which Linux carries from a parent into a child across fork and exec
    (a measurement started by a large process would report that process's peak)."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 2 ** 20


@functools.cache
def machine():
    """The CPU model, its widest vector extension, the cores, and TensorFlow's version.

    The model's family and number are part of it: machines named alike ("AMD EPYC", AVX-512 with
    BF16) but of other generations give other digits for the same run, so a run of one is never
    taken for a run of the other."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
        family = re.search(r"cpu family\s*:\s*(\d+)", text).group(1)
        number = re.search(r"^model\s*:\s*(\d+)", text, re.M).group(1)
        model += f" family {family} model {number}"
    except (OSError, AttributeError):
        pass
    vector = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    if "avx512_bf16" in flags:
        vector += " with BF16"
    from importlib.metadata import version
    return {"cpu": model, "vector": vector, "cores": os.cpu_count(),
            "tensorflow": version("tensorflow")}


def child_env(**variables):
    """The environment of a measuring child process: this one's, TensorFlow's notices below errors,
    the repository first on PYTHONPATH (so `-m benchmarks.NAME` finds it from any folder), and
    `variables`."""
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path, **variables}


def threads(env=None):
    """TensorFlow's intra-op thread count of a run: TF_NUM_INTRAOP_THREADS, else one per core."""
    return int({**os.environ, **(env or {})}.get("TF_NUM_INTRAOP_THREADS") or os.cpu_count())


def describe_machine(info):
    return (f"{info['cpu']} ({info['vector']}), {info['cores']} cores, TensorFlow "
            f"{info['tensorflow']}")


class Run:
    """One training of a table: `name` (its row), `flagfile`, `seed`, `extra` flags, `env`
    (environment variables of its process) and `prefix` (a command it runs under, e.g. taskset)."""

    def __init__(self, runs, name, flagfile, seed, extra=(), env=None, prefix=()):
        self.name, self.flagfile, self.seed, self.extra = name, flagfile, seed, tuple(extra)
        self.env, self.prefix = dict(env or {}), tuple(prefix)
        self.workdir = os.path.join(runs, name, f"seed_{seed}")

    @property
    def train_args(self):
        return ["-m", "semiseg_tf.train", f"--flagfile={self.flagfile}", f"--seed={self.seed}",
                f"--workdir={self.workdir}", *self.extra]

    @property
    def command(self):
        return [*(f"{k}={v}" for k, v in sorted(self.env.items())), *self.prefix, "python",
                *self.train_args]

    def wanted(self):
        return {"command": self.command, "commit": code_commit(), "machine": machine(),
                "threads": threads(self.env)}

    def record(self):
        path = os.path.join(self.workdir, RECORD)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def _current(self):
        """Whether the folder holds this run as it would be made now (finished or not)."""
        record, wanted = self.record(), self.wanted()
        return record is not None and all(record[k] == wanted[k] for k in wanted)

    def finished(self):
        """The run's metrics, when it finished with the wanted command, code, machine and threads."""
        metrics = os.path.join(self.workdir, "metrics.json")
        if not self._current() or not os.path.exists(metrics):
            return None
        with open(metrics) as f:
            return json.load(f)

    def train(self, log=sys.stdout):
        """Trains the run (resumed when its folder holds it unfinished, else in a fresh folder);
        returns its metrics."""
        metrics = self.finished()
        if metrics is not None:
            return metrics
        if not self._current() and os.path.exists(self.workdir):
            shutil.rmtree(self.workdir)          # another commit, machine, thread count or command
        os.makedirs(self.workdir, exist_ok=True)
        with open(os.path.join(self.workdir, RECORD), "w") as f:
            json.dump(self.wanted(), f, indent=2)
        print(f"{self.name} seed {self.seed}: training ({self.workdir})", file=log, flush=True)
        start = time.time()
        with open(os.path.join(self.workdir, "train.log"), "a") as out:
            subprocess.run([*self.prefix, sys.executable, *self.train_args], cwd=REPO,
                           env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                           check=True)
        print(f"{self.name} seed {self.seed}: trained in {time.time() - start:.0f} s", file=log,
              flush=True)
        return self.finished()


def train_all(runs, jobs=1):
    """Every run's metrics, {(name, seed): metrics}, training those not finished (`jobs` at a time;
    their results do not depend on the load, only their times do)."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {(r.name, r.seed): pool.submit(r.train) for r in runs}
        return {key: future.result() for key, future in futures.items()}


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def provenance(runs, command):
    """The lines above a table: commit, date, machine, threads and the command that regenerates it."""
    records = [r.record() for r in runs]
    commits = sorted({rec["commit"] for rec in records})
    counts = sorted({rec["threads"] for rec in records})
    info = records[0]["machine"]
    return (f"Code at commit {', '.join(commits)}; generated {datetime.date.today().isoformat()} on "
            f"{describe_machine(info)}, {' or '.join(map(str, counts))} intra-op thread(s) per "
            f"run. Regenerate: `{command}`.")


def replace_region(path, name, text):
    """Replaces what lies between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in `path`."""
    begin, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    with open(path) as f:
        document = f.read()
    if begin not in document or end not in document:
        raise SystemExit(f"error: {path}: no {begin} ... {end} region to fill")
    head, rest = document.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
