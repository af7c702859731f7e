"""The predictors the pipeline compares, and how their names appear in paths and tables.

Methods (the `method` column of every table):
- `network`: the finite network trained on n examples (k = n), at its last step;
- `network_best`: the same run at its best-validation evaluation after step 0 (early stopping chosen on
  validation data among trained networks);
- `linearized`: the network's first-order Taylor model at initialization, trained by the same optimizer,
  batches and schedule (in function space with the eNTK at init, training/linearized.py), at its
  best-validation evaluation: the network's own lazy limit;
- `entk_init`: kernel regression with the empirical NTK of the untrained network (k = 0);
- `entk_after`: with the eNTK of the network trained on a fixed number k of examples (the "after kernel");
- `entk_after_n`: with the eNTK of the network trained on the same n examples it regresses on (k = n);
- `infinite_ntk`, `infinite_nngp`: with the infinite-width NTK / NNGP of the architecture (width inf).

A kernel's *tag* names it in paths under kernels/ and regression/: `entk_init`, `entk_after_k<k>`,
`entk_after_n<n>`, `infinite_ntk`, `infinite_nngp`. `parse_tag` is the one place that reads a tag.

A kernel curve's *ridge* is a number (relative to mean(diag K)) or `tuned`: the ridge chosen for each
(kernel, n, seed) on the validation set. `ridge_label` is the one place that writes a ridge as text.

How methods are labelled in figures lives in plotting (METHOD_LABELS): kernel and training jobs import this
module, so a label edit must not make their outputs stale.
"""
from __future__ import annotations

import re

# Every method, in the order of tables and legends: the one list (labels and colours, in plotting, key on it).
METHODS = ("network", "network_best", "linearized", "entk_init", "entk_after", "entk_after_n", "infinite_ntk", "infinite_nngp")
# Curves whose k moves with n: one curve over n, whatever k is.
K_EQUALS_N = ("network", "network_best", "entk_after_n")
NETWORK_METHODS = ("network", "network_best")
RIDGELESS_METHODS = NETWORK_METHODS + ("linearized",)  # trained, not solved: no ridge
TUNED = "tuned"
# Wildcard patterns (Snakemake regexes) of the tags.
ENTK_TAG_PATTERN = r"entk_init|entk_after_k\d+|entk_after_n\d+"
INFINITE_TAGS = ("infinite_ntk", "infinite_nngp")
TAG_PATTERN = ENTK_TAG_PATTERN + "|" + "|".join(INFINITE_TAGS)

_TAG = re.compile(r"^(?:(entk_init)|entk_after_k(\d+)|entk_after_n(\d+)|(infinite_ntk|infinite_nngp))$")


def parse_tag(tag: str) -> dict:
    """{'method', 'k', 'n'}: k the training-set size of the kernel's network (0 at init, None for
    infinite kernels); n the only training-set size the kernel serves (entk_after_n), else None."""
    m = _TAG.match(str(tag))
    if not m:
        raise ValueError(f"kernel tag {tag!r} is unknown; expected entk_init, entk_after_k<k>, "
                         f"entk_after_n<n>, infinite_ntk or infinite_nngp")
    init, k, n, inf = m.groups()
    if init:
        return {"method": "entk_init", "k": 0, "n": None}
    if k:
        return {"method": "entk_after", "k": int(k), "n": None}
    if n:
        return {"method": "entk_after_n", "k": int(n), "n": int(n)}
    return {"method": inf, "k": None, "n": None}


def entk_tags(ks=(), at_n: bool = False, ns=()) -> list[str]:
    """Tags of every empirical kernel a run regresses with."""
    return (["entk_init"] + [f"entk_after_k{int(k)}" for k in ks]
            + ([f"entk_after_n{int(n)}" for n in ns] if at_n else []))


def ridge_label(ridge) -> str:
    """A ridge as it appears in tables and paths: `tuned`, or the number as Python writes it ('0.0',
    '0.001'); numbers written as text ('1e-3', '0.0010') get the same label. '' (network rows) stays ''."""
    if ridge is None or (isinstance(ridge, str) and ridge.strip() in ("", "nan")):
        return ""
    if isinstance(ridge, str) and ridge.strip() == TUNED:
        return TUNED
    value = float(ridge)
    return "" if value != value else repr(value)
