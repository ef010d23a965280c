"""Developer tools on top of everything: the benchmark and the mypyc build.

    bench.py          `make bench`: events/s and RSS against baselines in one run
    native.py         `make compile` / `make pure`: the per-event path with mypyc
"""
