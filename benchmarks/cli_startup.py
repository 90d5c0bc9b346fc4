"""`edgekit --help` wall time (goal: under 0.3 s). Median of 15 runs after one warm-up."""

from _util import EDGEKIT, machine, median, timed

if __name__ == "__main__":
    timed([*EDGEKIT, "--help"])
    times = [timed([*EDGEKIT, "--help"]) for _ in range(15)]
    py = [timed([EDGEKIT[0], "-c", "pass"]) for _ in range(15)]
    print(f"machine: {machine()}")
    print(f"edgekit --help: median {median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, "
          f"max {max(times) * 1000:.0f}); bare python start {median(py) * 1000:.0f} ms")
    print(f"goal < 300 ms: {'met' if median(times) < 0.3 else 'NOT met'}")
