"""Adapter: fit metric = a * n^-alpha per curve (method, width, k) with bootstrap intervals."""
from ntkscaling import io, scaling

with io.log_to(snakemake.log[0]):
    rows = scaling.fit_curves(snakemake.input.pointwise, snakemake.params.fit)
    io.write_rows(snakemake.output[0], rows, columns=scaling.EXPONENT_COLUMNS)
    for r in rows:
        print(f"{r['method']:>12} w={r['width']} k={r['k']} {r['metric']}: alpha={r['alpha']:.3f} "
              f"[{r['alpha_lo']:.3f}, {r['alpha_hi']:.3f}]")
