"""ntkscaling: measure whether the Neural Tangent Kernel explains how a network scales with data.

Modules, in pipeline order: data (datasets, nested subsets), models (networks from one architecture
description), training (Lightning), metrics (shared losses), scaling (power-law fits), plotting (figures),
plus config (validation) and io (atomic outputs, tidy tables).
"""
__version__ = "0.1.0"

from .models import build, load_nt_params  # noqa: E402,F401
