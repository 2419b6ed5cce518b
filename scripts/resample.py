"""How far a median of measurements resolves: the scripts' one bootstrap."""
import random
import statistics


def interval(values, resamples=2000, seed=0):
    """The 5th and 95th percentiles of the medians of `resamples` resamples of `values` (with
    replacement, as many as there are)."""
    rng = random.Random(seed)
    return middle_90([statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)])


def ratio_interval(a, b, stat, resamples=2000, seed=0):
    """The 5th and 95th percentiles of stat(a') / stat(b') over `resamples` resamples a' of `a`
    and b' of `b` (each with replacement, as many as there are): how far a ratio of two
    samples' statistics (two p99s, say) resolves."""
    rng = random.Random(seed)
    return middle_90([stat(rng.choices(a, k=len(a))) / stat(rng.choices(b, k=len(b))) for _ in range(resamples)])


def middle_90(values):
    """The 5th and 95th percentiles of `values`, as the two intervals above take them."""
    v = sorted(values)
    return v[len(v) // 20], v[len(v) - 1 - len(v) // 20]
