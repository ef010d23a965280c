"""Developer tools on top of everything: the benchmark and the mypyc build.

    bench/            `make bench`: events/s and RSS against baselines in one run; `nudge run`
                      timed as a whole process, one and a 2-process cluster
    native.py         `make compile` / `make pure`: the per-event path with mypyc
"""
