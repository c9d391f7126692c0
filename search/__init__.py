"""Hardware-aware NAS on benchmarks: optimizers, objectives, Pareto fronts, verification on devices."""
