"""Progress lines for long work: done/total, rate and time left, at most one every few seconds."""
import sys
import time


class Progress:
    """`update(done)` prints `  WHAT: done/total (p%), R UNIT/s, Ns left` to `out` when `every`
    seconds have passed since the last line, and always at the end."""

    def __init__(self, what, total, unit, out=sys.stderr, every=5.0):
        self.what, self.total, self.unit, self.out, self.every = what, total, unit, out, every
        self.start = self.last = time.perf_counter()
        self.done = 0

    @property
    def rate(self):
        """Units done per second since the start."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def update(self, done):
        self.done = done
        now = time.perf_counter()
        if done == self.total or now - self.last >= self.every:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            left = (self.total - done) / rate if rate > 0 else 0
            print(f"  {self.what}: {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%), "
                  f"{rate:.1f} {self.unit}/s, {left:.0f}s left", file=self.out, flush=True)
