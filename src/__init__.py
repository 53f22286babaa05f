"""PatchCore (Roth et al., CVPR 2022) for industrial anomaly detection, on MindSpore."""

__version__ = "0.1.0"
