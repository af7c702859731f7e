"""From kernels and predictions to answers: `losses` (the per-point losses every curve shares), `regression`
(kernel ridge regression for every n), `theory` (what a kernel's spectrum predicts), `evolution` (how far the
eNTK moves and how far each width is from the infinite limit) and `scaling` (power-law fits with calibrated
intervals)."""
