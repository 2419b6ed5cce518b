"""How far a median of measurements resolves: the scripts' one bootstrap."""
import random
import statistics


def interval(values, resamples=2000, seed=0):
    """The 5th and 95th percentiles of the medians of `resamples` resamples of `values` (with
    replacement, as many as there are)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return meds[resamples // 20], meds[resamples - 1 - resamples // 20]
