"""The empirical NTK: `api` (the public functions and the plain Jacobian contraction), the engines that give
its numbers fast: `layerwise` (networks of the library's layers, from each layer's own rule), `general` (any
torch module, from per-sample Jacobians within a memory budget), their shared block machinery (`blocks`) and
host-memory tuning (`hostmem`)."""
