"""Figures (seaborn, PDF + PNG): the last stage of the pipeline, plain group-bys of the tidy tables."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

METRIC_LABELS = {"test_error": "test error (fraction misclassified)",
                 "test_mse": "test MSE (mean over outputs)"}
METHOD_LABELS = {"network": "network", "entk_init": "eNTK at init", "infinite_ntk": "infinite NTK",
                 "infinite_nngp": "NNGP"}
CURVE_KEYS = ["method", "width", "k", "kind", "ridge"]


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Comparable curve keys in both tables: k is meaningless for the network (trained on n itself)."""
    df = df.copy()
    for col in ("k", "kind", "ridge"):
        if col not in df:
            df[col] = ""
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str).str.replace(r"\.0$", "", regex=True)
    df.loc[df["method"] == "network", "k"] = ""
    df["width"] = df["width"].astype(float)  # inf for infinite-width kernels
    return df


def curve_label(method, width, k, kind, ridge) -> str:
    label = METHOD_LABELS.get(method, method)
    if method.startswith("after") and k:
        label += f" k={k}"
    if kind:
        label += f" [{kind}, ridge {ridge}]"
    return label if np.isinf(width) else f"{label}, width {int(width)}"


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every curve, seed and n: the end-of-training measurement."""
    keys = CURVE_KEYS + ["seed", "n"]
    last = metrics.groupby(keys, dropna=False)["step"].transform("max")
    return metrics[metrics["step"] == last]


def plot_data_scaling(metrics: pd.DataFrame, exponents: pd.DataFrame, metric_names, title: str, ridge=None):
    """Test metrics vs n (log-log), one line per curve, fitted power law and exponent in the legend.

    ridge: show kernel curves of this ridge only (None: all ridges)."""
    sns.set_theme(style="whitegrid", context="paper")
    df = final_rows(_normalize(metrics))
    exponents = _normalize(exponents)
    if ridge is not None:
        keep = f"{float(ridge):g}"
        df = df[(df["ridge"] == "") | (df["ridge"].map(lambda r: r and f"{float(r):g}") == keep)]
    fig, axes = plt.subplots(1, len(metric_names), figsize=(6 * len(metric_names), 4.8), squeeze=False)
    palette = sns.color_palette("colorblind", 10)
    for ax, metric in zip(axes[0], metric_names):
        sub = df[df["metric"] == metric]
        for i, (key, g) in enumerate(sub.groupby(CURVE_KEYS, sort=True)):
            stats = g.groupby("n")["value"].agg(["mean", "std"]).reset_index()
            color = palette[i % len(palette)]
            match = (exponents[CURVE_KEYS] == pd.Series(dict(zip(CURVE_KEYS, key)))).all(axis=1)
            fit = exponents[match & (exponents["metric"] == metric)]
            label = curve_label(*key)
            if len(fit):
                f = fit.iloc[0]
                label += f": α={f['alpha']:.2f} [{f['alpha_lo']:.2f}, {f['alpha_hi']:.2f}]"
                nn = np.geomspace(f["n_min"], f["n_max"], 50)
                ax.plot(nn, f["a"] * nn ** (-f["alpha"]) + f["c"], "--", color=color, lw=1)
            ax.errorbar(stats["n"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", ms=4,
                        color=color, lw=1.5, capsize=2, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("training set size n (log scale)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric) + " (log scale)")
        ax.legend(fontsize=6.5, loc="lower left")
    fig.suptitle(f"Data scaling: {title}")
    fig.tight_layout()
    return fig


def save_figure(fig, *paths, dpi: int = 150):
    """Write the figure atomically to each path (format from the suffix), then close it."""
    from pathlib import Path

    from .io import atomic_path
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix.lstrip("."), dpi=dpi)
    plt.close(fig)
