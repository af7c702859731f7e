"""Kernels of a network: its empirical NTK at any checkpoint (`kernels.empirical`) and the infinite-width NTK
and NNGP of its architecture (`kernels.infinite`). Each has a plain definition in `api` and fast engines
tested against it."""
