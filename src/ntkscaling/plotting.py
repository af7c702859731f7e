"""Figures (seaborn, PDF + PNG): the last stage of the pipeline, plain group-bys of the tidy tables."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .pipeline.tags import K_EQUALS_N, ridge_label  # noqa: E402
from .analysis.theory import TRUSTED_ROWS_PER_N  # noqa: E402

METHOD_LABELS = {"network": "network", "network_best": "network (best val.)", "linearized": "linearized network",
                 "entk_init": "eNTK at init",
                 "entk_after": "after-kernel", "entk_after_n": "after-kernel k=n", "infinite_ntk": "infinite NTK",
                 "infinite_nngp": "NNGP"}

METRIC_LABELS = {"test_error": "test error (fraction misclassified)",
                 "test_mse": "test MSE (mean over outputs)"}
CURVE_KEYS = ["method", "width", "k", "kind", "ridge"]


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Comparable curve keys in both tables: k is meaningless for the network (trained on n itself)."""
    df = df.copy()
    for col in ("k", "kind", "ridge"):
        if col not in df:
            df[col] = ""
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
        df[col] = df[col].map(ridge_label) if col == "ridge" else df[col].str.replace(r"\.0$", "", regex=True)
    df.loc[df["method"].isin(K_EQUALS_N), "k"] = ""
    df["width"] = df["width"].astype(float)  # inf for infinite-width kernels
    return df


def curve_label(method, width, k, kind, ridge) -> str:
    label = METHOD_LABELS.get(method, method)
    if method == "entk_after" and k:
        label += f" k={k}"
    if kind:
        label += f" [{kind}, ridge {ridge}]" if ridge else f" [{kind} eNTK]"
    return label if np.isinf(width) else f"{label}, width {int(width)}"


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every curve, seed and n: the end-of-training measurement."""
    keys = CURVE_KEYS + ["seed", "n"]
    last = metrics.groupby(keys, dropna=False)["step"].transform("max")
    return metrics[metrics["step"] == last]


def select(df: pd.DataFrame, ridge=None, width=None, methods=None) -> pd.DataFrame:
    """Rows of one ridge (network rows have none), one finite width (infinite-width rows kept), some methods."""
    if ridge is not None:
        df = df[(df["ridge"] == "") | (df["ridge"] == ridge_label(ridge))]
    if width is not None:
        df = df[(df["width"] == float(width)) | np.isinf(df["width"])]
    if methods is not None:
        df = df[df["method"].isin(methods)]
    return df


def _fit_of(exponents: pd.DataFrame, key, metric):
    match = (exponents[CURVE_KEYS] == pd.Series(dict(zip(CURVE_KEYS, key)))).all(axis=1)
    fit = exponents[match & (exponents["metric"] == metric)]
    return fit.iloc[0] if len(fit) else None


_PALETTE = sns.color_palette("colorblind", 10)
METHOD_COLORS = {"network": _PALETTE[0], "network_best": _PALETTE[9], "entk_init": _PALETTE[1], "entk_after_n": _PALETTE[2],
                 "infinite_ntk": _PALETTE[3], "entk_after": _PALETTE[4], "infinite_nngp": _PALETTE[5],
                 "linearized": _PALETTE[6]}


def _curve_colors(keys) -> dict:
    """One colour per method; curves of several k (after-kernels) or widths get shades of it."""
    colors, by_method = {}, {}
    for key in keys:
        by_method.setdefault(key[0], []).append(key)
    for method, group in by_method.items():
        base = METHOD_COLORS.get(method, _PALETTE[7])
        shades = [base] if len(group) == 1 else sns.light_palette(base, len(group) + 1)[1:]
        colors.update(zip(group, shades))
    return colors


def flagged_sizes(value) -> list[int]:
    """The n of an `unlearned_n` cell ('64;128'), as a table read back gives it: a column whose only flag is
    one n reads as a number (64.0), an empty one as NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [int(float(v)) for v in str(value).split(";") if v.strip() not in ("", "nan")]


def _scaling_axis(ax, df: pd.DataFrame, exponents: pd.DataFrame, metric: str):
    """One panel: metric vs n (log-log) per curve, mean +- sd over seeds, fitted power law dashed."""
    sub = df[df["metric"] == metric]
    groups = list(sub.groupby(CURVE_KEYS, sort=True))
    colors = _curve_colors([key for key, _ in groups])
    for key, g in groups:
        stats = g.groupby("n")["value"].agg(["mean", "std"]).reset_index()
        color = colors[key]
        label = curve_label(*key)
        f = _fit_of(exponents, key, metric)
        if f is not None:
            label += f": α={f['alpha']:.2f} [{f['alpha_lo']:.2f}, {f['alpha_hi']:.2f}]"
            if f["n_min"] > stats["n"].min() or f["n_max"] < stats["n"].max():
                label += f" over n={f['n_min']:g}..{f['n_max']:g}"
            flagged = flagged_sizes(f.get("unlearned_n", ""))
            if flagged:  # not better than the zero function there: kept out of the fit
                out = stats[stats["n"].isin(flagged)]
                ax.plot(out["n"], out["mean"], "x", color="red", ms=8, mew=2, zorder=5)
                label += " (x: not learned, not fitted)"
            if pd.notna(f.get("alpha_deficit")) and f["method"] != f.get("network_method"):
                label += f", Δα={f['alpha_deficit']:.2f} [{f['deficit_lo']:.2f}, {f['deficit_hi']:.2f}]"
            nn = np.geomspace(f["n_min"], f["n_max"], 50)
            ax.plot(nn, f["a"] * nn ** (-f["alpha"]) + f["c"], "--", color=color, lw=1)
        ax.errorbar(stats["n"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", ms=4,
                    color=color, lw=1.5, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training set size n (log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric) + " (log scale)")
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)


SCALING_METHODS = ("network", "network_best", "linearized", "entk_init", "infinite_ntk", "infinite_nngp")


def plot_data_scaling(metrics: pd.DataFrame, exponents: pd.DataFrame, metric_names, title: str, ridge=None,
                      width=None, methods=SCALING_METHODS):
    """Test metrics vs n (log-log), one line per curve, fitted power law and exponent in the legend.

    ridge: show kernel curves of this ridge only (None: all ridges); width: one finite width (None: all)."""
    sns.set_theme(style="whitegrid", context="paper")
    df = select(final_rows(_normalize(metrics)), ridge, width, methods)
    exponents = _normalize(exponents)
    fig, axes = plt.subplots(2, len(metric_names), figsize=(6 * len(metric_names), 9.4), squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1]})
    for ax, local, metric in zip(axes[0], axes[1], metric_names):
        _scaling_axis(ax, df, exponents, metric)
        _local_slope_axis(local, df, metric)
    fig.suptitle(f"Data scaling: {title}")
    fig.tight_layout()
    return fig


def local_slopes(n, values) -> tuple[np.ndarray, np.ndarray]:
    """(geometric midpoints, local exponents -d log y / d log n) between consecutive sizes of a curve."""
    n, values = np.asarray(n, dtype=float), np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = -np.diff(np.log(values)) / np.diff(np.log(n))
    return np.sqrt(n[1:] * n[:-1]), slope


def _local_slope_axis(ax, df: pd.DataFrame, metric: str):
    """The local exponent of each curve's seed mean per doubling of n: where in n a curve steepens or levels
    off, which a full-range exponent averages away."""
    sub = df[df["metric"] == metric]
    groups = list(sub.groupby(CURVE_KEYS, sort=True))
    colors = _curve_colors([key for key, _ in groups])
    for key, g in groups:
        mean = g.groupby("n")["value"].mean()
        mid, slope = local_slopes(mean.index, mean.values)
        ax.plot(mid, slope, marker="o", ms=3, color=colors[key], lw=1.2)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training set size n (between consecutive sizes)")
    ax.set_ylabel(f"local exponent of the {METRIC_LABELS.get(metric, metric)}", fontsize=8)


def _reference_line(ax, row, label, color, style):
    """A method's exponent as a horizontal line with its interval as a band."""
    ax.axhline(row["alpha"], color=color, ls=style, lw=1.5,
               label=f"{label}: α={row['alpha']:.2f} [{row['alpha_lo']:.2f}, {row['alpha_hi']:.2f}]")
    ax.axhspan(row["alpha_lo"], row["alpha_hi"], color=color, alpha=0.12, lw=0)


def plot_after_kernel(metrics: pd.DataFrame, exponents: pd.DataFrame, metric_names, title: str, ridge, width):
    """Left: metric vs n for the network, eNTK at init, infinite NTK and every after-kernel. Right: the
    after-kernels' exponent vs k beside the network's and the eNTK at init's over the same range (n >= k, as
    each after-kernel is fitted: `network_alpha`, `init_alpha`), with the k=n and infinite-NTK exponents as
    lines (over all n)."""
    sns.set_theme(style="whitegrid", context="paper")
    methods = ("network_best", "entk_init", "entk_after", "entk_after_n", "infinite_ntk")
    df = select(final_rows(_normalize(metrics)), ridge, width, methods)
    ex = select(_normalize(exponents), ridge, width, methods)
    fig, axes = plt.subplots(len(metric_names), 2, figsize=(12, 6.0 * len(metric_names)), squeeze=False)
    for row, metric in enumerate(metric_names):
        _scaling_axis(axes[row, 0], df, ex, metric)
        ax = axes[row, 1]
        sub = ex[ex["metric"] == metric]
        after = sub[sub["method"] == "entk_after"].assign(k=lambda d: d["k"].astype(float)).sort_values("k")
        refs = [("network_best", "network (best val.)", "-"), ("entk_init", "eNTK at init (k=0)", "--"),
                ("entk_after_n", "after-kernel k=n", "-."), ("infinite_ntk", "infinite NTK", ":")]
        matched = len(after) and "init_alpha" in after and after["init_alpha"].notna().all()
        for method, label, style in refs:
            if matched and method in ("network_best", "entk_init"):
                continue  # drawn against k below, over each after-kernel's own range
            for _, r in sub[sub["method"] == method].iterrows():
                _reference_line(ax, r, label, METHOD_COLORS[method], style)
        if matched:
            for column, method, label in (("network_alpha", "network_best", "network (best val.), same n range"),
                                          ("init_alpha", "entk_init", "eNTK at init (k=0), same n range")):
                ax.plot(after["k"], after[column], marker="s", ms=4, ls="--", color=METHOD_COLORS[method],
                        label=label)
        if len(after):
            ax.errorbar(after["k"], after["alpha"], yerr=[after["alpha"] - after["alpha_lo"],
                                                          after["alpha_hi"] - after["alpha"]],
                        marker="o", color=METHOD_COLORS["entk_after"], capsize=3,
                        label="after-kernel, pre-trained on k (fitted over n ≥ k)" if
                        (after["n_min"] >= after["k"]).all() else "after-kernel, pre-trained on k")
            ax.set_xscale("log", base=2)
        else:
            ax.text(0.5, 0.5, "no after_kernel.ks configured", transform=ax.transAxes, ha="center")
        ax.set_xlabel("pre-training set size k (log scale)")
        ax.set_ylabel(f"data-scaling exponent α of {metric}")
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"After-kernels (eNTK of a network trained on k examples): {title}")
    fig.tight_layout()
    return fig


EVOLUTION_LABELS = {"distance_init": "to initial kernel", "distance_final": "to final kernel",
                    "distance_prev": "to previous checkpoint"}


def plot_kernel_evolution(evolution: pd.DataFrame, title: str, ridge, metric: str = "test_error"):
    """How the eNTK moves during training: distances (init/final/previous), velocity (the angle between a
    checkpoint's kernel and its partner's a fixed step gap later, per unit of summed learning rate: the same
    gap at every time, so sampling noise does not look like settling; without partners the angle to the
    previous checkpoint per epoch), kernel vs
    network test metric, label alignment, and the spectrum's eigenvalue decay b and share of the target's
    power in its leading modes (where the table has them); x is the training step on a symlog axis (step 0
    included). Lines are means over seeds with a band of one standard deviation; one colour per width."""
    sns.set_theme(style="whitegrid", context="paper")
    df = select(_normalize(evolution), ridge)
    df = df.assign(width=df["width"].astype(int).astype(str), n=df["n"].astype(int).astype(str))
    style = "n" if df["n"].nunique() > 1 else None
    fig, axes = plt.subplots(2, 3, figsize=(18, 9))
    dist = df[df["metric"].isin(EVOLUTION_LABELS)].assign(
        distance=lambda d: d["metric"].map(EVOLUTION_LABELS))
    sns.lineplot(dist, x="step", y="value", hue="width", style="distance", errorbar="sd", marker="o", ms=3,
                 ax=axes[0, 0])
    axes[0, 0].set_ylabel("kernel distance S = 1 - <K1,K2>/(|K1| |K2|)")
    fixed = (df["metric"] == "velocity_gap_lr").any()  # the fixed-gap velocity per unit of learning rate
    vel = df[df["metric"] == ("velocity_gap_lr" if fixed else "velocity_epoch")]
    sns.lineplot(vel, x="step" if fixed else "epoch", y="value", hue="width", style=style, errorbar="sd", marker="o",
                 ms=3, ax=axes[0, 1])
    axes[0, 1].set(xscale="log", yscale="log", xlabel=f"{'step' if fixed else 'epoch'} (log scale)",
                   ylabel="kernel velocity: angle over a fixed step gap per unit of summed learning rate"
                   if fixed else "kernel velocity: angle to the previous kernel per epoch (rad, log scale)")
    err = df[df["metric"] == metric].assign(
        predictor=lambda d: d["method"].map({"network": "network", "entk_checkpoint": "kernel of checkpoint"}))
    sns.lineplot(err, x="step", y="value", hue="width", style="predictor", errorbar="sd", marker="o", ms=3,
                 ax=axes[1, 0])
    axes[1, 0].set_ylabel(METRIC_LABELS.get(metric, metric))
    align = df[df["metric"].isin(["alignment_train", "alignment_test"])].assign(
        block=lambda d: d["metric"].str.replace("alignment_", "") + " block")
    sns.lineplot(align, x="step", y="value", hue="width", style="block", errorbar="sd", marker="o", ms=3,
                 ax=axes[1, 1])
    axes[1, 1].set_ylabel("centred kernel alignment with one-hot labels")
    top = sorted(m for m in df["metric"].unique() if m.startswith("alignment_top"))
    for ax, metric_name, ylabel in ((axes[0, 2], "spectrum_b", "eigenvalue decay b of the spectrum (λ_k ~ k^-b)"),
                                    (axes[1, 2], top[0] if top else None, "share of the target's power in the "
                                     f"top {top[0][len('alignment_top'):] if top else '?'} eigenmodes")):
        sns.lineplot(df[df["metric"] == metric_name], x="step", y="value", hue="width", style=style, errorbar="sd",
                     marker="o", ms=3, ax=ax)
        ax.set_ylabel(ylabel)
    for ax in (axes[0, 0], axes[1, 0], axes[1, 1], axes[0, 2], axes[1, 2]):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("training step (symlog scale: linear below 1, log above)")
    for ax in axes.flat:
        ax.legend(fontsize=6.5)
    ns = ", ".join(sorted(df["n"].unique(), key=int))
    fig.suptitle(f"Kernel evolution during training (n = {ns}, kernel regression ridge {ridge:g}): {title}")
    fig.tight_layout()
    return fig


def plot_width_scaling(metrics: pd.DataFrame, exponents: pd.DataFrame, distance: pd.DataFrame, metric_names,
                       title: str, ridge, n):
    """Top: test metric at fixed n vs width (network, eNTK at init; infinite NTK as the width-to-infinity
    line) and the eNTK-at-init's relative distance to the infinite NTK. Bottom: exponents vs width, and
    the kernel distance S to the infinite NTK."""
    sns.set_theme(style="whitegrid", context="paper")
    methods = {m: METHOD_COLORS[m] for m in ("network_best", "entk_init")}
    inf_color = METHOD_COLORS["infinite_ntk"]
    df = select(final_rows(_normalize(metrics)), ridge, methods=list(methods) + ["infinite_ntk"])
    df = df[df["n"].astype(int) == int(n)]
    ex = select(_normalize(exponents), ridge, methods=list(methods) + ["infinite_ntk"])
    m = len(metric_names)
    fig, axes = plt.subplots(2, m + 2, figsize=(5 * (m + 2), 8.5), squeeze=False)
    for col, metric in enumerate(metric_names):
        top, bottom = axes[0, col], axes[1, col]
        sub, fits = df[df["metric"] == metric], ex[ex["metric"] == metric]
        for method, color in methods.items():
            s = sub[sub["method"] == method].groupby("width")["value"].agg(["mean", "std"]).reset_index()
            top.errorbar(s["width"], s["mean"], yerr=s["std"].fillna(0), marker="o", color=color, capsize=2,
                         label=METHOD_LABELS[method])
            f = fits[fits["method"] == method].sort_values("width")
            bottom.errorbar(f["width"], f["alpha"], yerr=[f["alpha"] - f["alpha_lo"], f["alpha_hi"] - f["alpha"]],
                            marker="o", color=color, capsize=3, label=METHOD_LABELS[method])
        inf = sub[sub["method"] == "infinite_ntk"]["value"]
        if len(inf):
            top.axhline(inf.mean(), color=inf_color, ls=":", label="infinite NTK (width → ∞)")
        for _, r in fits[fits["method"] == "infinite_ntk"].iterrows():
            _reference_line(bottom, r, "infinite NTK (width → ∞)", inf_color, ":")
        top.set_xscale("log", base=2)
        bottom.set_xscale("log", base=2)
        top.set(yscale="log", xlabel="width (log scale)",
                ylabel=f"{METRIC_LABELS.get(metric, metric)} at n={n} (log scale)")
        bottom.set(xlabel="width (log scale)", ylabel=f"data-scaling exponent α of {metric}")
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
    # guides: fluctuations of the eNTK are O(width^-1/2); S is quadratic in them, so O(width^-1)
    _distance_panel(axes[0, m], distance, "relative_distance_infinite", "||K_eNTK - K_inf||_F / ||K_inf||_F",
                    "eNTK at init vs infinite NTK", METHOD_COLORS["entk_init"], guide=0.5)
    _distance_panel(axes[1, m], distance, "kernel_distance_infinite", "kernel distance S(K_eNTK, K_inf)",
                    "eNTK at init vs infinite NTK", METHOD_COLORS["entk_init"], guide=1.0)
    # lazy-limit consistency: the trained network's test predictions against its own linearization trained the
    # same way (top; ridge-0 regression with its eNTK where the linearized network is not defined) and against
    # ridge-0 kernel regression with the infinite NTK (bottom); all go to 0 in the lazy limit, the top one
    # whether or not training converged
    linearized = len(distance) and (distance["metric"] == "prediction_distance_linearized").any()
    label = f"trained network vs {'its linearization, same training' if linearized else 'kernel regression (ridge 0)'}, n={n}"
    _distance_panel(axes[0, m + 1], distance,
                    "prediction_distance_linearized" if linearized else "prediction_distance_entk_init",
                    "||f_net - f_lin|| / ||f_lin||" if linearized else "||f_net - f_eNTK-at-init||  /  ||f_eNTK-at-init||",
                    label, METHOD_COLORS["network"], title="lazy-limit consistency (test predictions)")
    label = f"trained network vs kernel regression (ridge 0), n={n}"
    _distance_panel(axes[1, m + 1], distance, "prediction_distance_infinite_ntk",
                    "||f_net - f_infinite-NTK||  /  ||f_infinite-NTK||", label, METHOD_COLORS["network"],
                    title="lazy-limit consistency (test predictions)")
    fig.suptitle(f"Width scaling (kernel ridge {ridge}): {title}")
    fig.tight_layout()
    return fig


def _distance_panel(ax, distance: pd.DataFrame, metric: str, ylabel: str, label: str, color, guide=None,
                    title=None):
    """One width-scaling distance against width (log-log), mean +- sd over seeds, with an optional
    width^-guide reference slope."""
    sub = distance[distance["metric"] == metric] if len(distance) else distance
    if not len(sub):
        ax.text(0.5, 0.5, "needs kernel.infinite: true", transform=ax.transAxes, ha="center")
        return
    s = sub.groupby("width")["value"].agg(["mean", "std"]).reset_index()
    ax.errorbar(s["width"], s["mean"], yerr=s["std"].fillna(0), marker="o", color=color, capsize=2, label=label)
    if guide is not None:
        ref = s["mean"].iloc[0] * (s["width"].iloc[0] / s["width"]) ** guide
        ax.plot(s["width"], ref, "k--", lw=1, label=f"∝ width^-{guide:g}")
    ax.set_xscale("log", base=2)
    ax.set(yscale="log", xlabel="width (log scale)", ylabel=ylabel + " (log scale)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)


def save_figure(fig, *paths, dpi: int = 150):
    """Write the figure atomically to each path (format from the suffix), then close it."""
    from pathlib import Path

    from .files import atomic_path
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix.lstrip("."), dpi=dpi)
    plt.close(fig)


THEORY_METHODS = ("entk_init", "entk_after", "entk_after_n", "infinite_ntk", "infinite_nngp")


def plot_theory(metrics: pd.DataFrame, summary: pd.DataFrame, title: str, ridge, width):
    """Top: per kernel family, the measured test MSE (points, mean +- sd over seeds) and what the kernel's
    spectrum predicts (line), with the limit n = M/10 of the spectrum's M rows (theory.TRUSTED_ROWS_PER_N) below which the theory is to
    be trusted. Bottom: per kernel, the measured exponent beside the predicted one and min(a-1, 2b); the
    eigenvalue decay b; the share of the target's power in the leading modes."""
    sns.set_theme(style="whitegrid", context="paper")
    df = select(_normalize(metrics), ridge, width, THEORY_METHODS)
    ex = select(_normalize(summary), ridge, width, THEORY_METHODS)
    ex = ex[ex["metric"] == "test_mse"]
    families = [m for m in THEORY_METHODS if (df["method"] == m).any()]
    fig, axes = plt.subplots(2, max(len(families), 3), figsize=(4.2 * max(len(families), 3), 8.5), squeeze=False)
    for ax, method in zip(axes[0], families):
        _theory_axis(ax, df[df["method"] == method], ex)
    for ax in axes[0][len(families):]:
        ax.axis("off")
    _spectrum_axes(axes[1], df, ex)
    fig.suptitle(f"Theory beside measurement (eigenlearning from each kernel's spectrum): {title}")
    fig.tight_layout()
    return fig


def _theory_axis(ax, df: pd.DataFrame, summary: pd.DataFrame):
    groups = list(df[df["metric"] == "test_mse"].groupby(CURVE_KEYS, sort=True))
    colors = _curve_colors([key for key, _ in groups])
    for key, g in groups:
        measured = g.groupby("n")["value"].agg(["mean", "std"])
        predicted = (df[(df["metric"] == "predicted_test_mse") & (df[CURVE_KEYS] == pd.Series(dict(zip(CURVE_KEYS, key)))
                                                                  ).all(axis=1)].groupby("n")["value"].mean())
        f = _fit_of(summary, key, "test_mse")
        label = curve_label(*key)
        if f is not None:
            label += f": α={f['alpha']:.2f}, predicted {f['alpha_predicted']:.2f}"
        ax.errorbar(measured.index, measured["mean"], yerr=measured["std"].fillna(0), ls="none", marker="o",
                    ms=4, capsize=2, color=colors[key], label=label)
        ax.plot(predicted.index, predicted.to_numpy(), "-", color=colors[key], lw=1.2)
    rows = df[df["metric"] == "alpha_powerlaw"]["n"]
    if len(rows):
        ax.axvline(rows.min() / TRUSTED_ROWS_PER_N, color="0.4", ls=":", lw=1,
                   label=f"n = M/{TRUSTED_ROWS_PER_N} (M = {int(rows.min())} spectrum rows)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training set size n (log scale)")
    ax.set_ylabel("test MSE: measured (points), predicted (line)")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)


def _spectrum_axes(axes, df: pd.DataFrame, summary: pd.DataFrame):
    """Per kernel (x axis): exponents measured, predicted and min(a-1, 2b); b with its interval; alignment.
    Spectral values are means over seeds."""
    keys = ["method", "width", "k"]
    spectral = df[df["metric"].str.match(r"spectrum_b|alignment_top")]
    table = spectral.groupby(keys + ["metric"])["value"].mean().unstack("metric")
    kernels = summary.join(table, on=keys) if len(table) else summary
    x = np.arange(len(kernels))
    for column, marker, name in (("alpha", "o", "measured α"), ("alpha_predicted", "s", "predicted α"),
                                 ("alpha_powerlaw", "^", "min(a-1, 2b)")):
        axes[0].plot(x, kernels[column].astype(float), marker, label=name)
    axes[0].set_ylabel("test-MSE exponent")
    axes[0].legend(fontsize=7)
    if "spectrum_b" in kernels:
        b = kernels["spectrum_b"].astype(float)
        axes[1].errorbar(x, b, yerr=[b - kernels["spectrum_b_lo"], kernels["spectrum_b_hi"] - b], fmt="o", capsize=3)
    axes[1].set_ylabel("eigenvalue decay b (λ_k ~ k^-b)")
    alignment = [c for c in kernels.columns if str(c).startswith("alignment_top")]
    if alignment:
        axes[2].plot(x, kernels[alignment[0]].astype(float), "o")
        axes[2].set_ylabel(f"share of target power in the top {alignment[0][len('alignment_top'):]} modes")
    labels = [curve_label(m, w, k, "", "") for m, w, k in zip(kernels["method"], kernels["width"], kernels["k"])]
    for ax in axes[:3]:
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=6.5)
    for ax in axes[3:]:
        ax.axis("off")


SWEEP_METHODS = ("network", "network_best", "entk_init", "entk_after", "infinite_ntk")
_OTHER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_sweep(table: pd.DataFrame, keys, metric_names, title: str, ridge, width):
    """Two panels per fitted metric (rows) and swept setting (columns): each method's exponent alpha with its
    interval at every value of the setting, then each kernel's deficit (network alpha - kernel alpha, paired
    interval; above 0: the network out-scales the kernel) against a line at 0; marker shapes tell apart the
    values of the other swept settings. Grid points whose networks diverged (status 'diverged') are red
    crosses on the x axis."""
    sns.set_theme(style="whitegrid", context="paper")
    trained = table[table["status"] == "ok"]
    diverged = table[table["status"] != "ok"]
    df = select(_normalize(trained), ridge, width, SWEEP_METHODS) if len(trained) else trained
    fig, axes = plt.subplots(2 * len(metric_names), len(keys), squeeze=False,
                             figsize=(max(4.8 * len(keys), 9.0), 3.8 * 2 * len(metric_names)))
    for i, metric in enumerate(metric_names):
        part = df[df["metric"] == metric] if len(df) else df
        kernels = part[~part["method"].isin(("network", "network_best"))] if len(part) else part
        for ax_alpha, ax_deficit, key in zip(axes[2 * i], axes[2 * i + 1], keys):
            others = [k for k in keys if k != key]
            _sweep_axis(ax_alpha, part, diverged, table, key, others)
            ax_alpha.set_ylabel(f"α of {metric} (n^-α)")
            _sweep_axis(ax_deficit, kernels, diverged, table, key, others, value="alpha_deficit")
            ax_deficit.axhline(0, color="0.3", lw=1)
            ax_deficit.set_ylabel(f"deficit Δα of {metric}: network α - kernel α")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=7, frameon=False)
    fig.suptitle(f"Data-scaling exponents across the sweep: {title}", fontsize=10)
    fig.tight_layout(rect=(0, 0.03 + 0.025 * ((len(labels) + 2) // 3), 1, 1))
    return fig


def _sweep_axis(ax, df: pd.DataFrame, diverged: pd.DataFrame, table: pd.DataFrame, key: str, others: list,
                value: str = "alpha"):
    """One swept setting on the x axis: `value` ('alpha' or 'alpha_deficit') with its interval per curve."""
    columns = {"alpha": ("alpha", "alpha_lo", "alpha_hi"),
               "alpha_deficit": ("alpha_deficit", "deficit_lo", "deficit_hi")}[value]
    values = list(dict.fromkeys(table[key].astype(str)))  # grid order
    where = {v: i for i, v in enumerate(values)}
    curves = list(df.groupby(["method", "width", "k"], sort=True)) if len(df) else []
    colors = _curve_colors([(m, w, k, "", "") for (m, w, k), _ in curves])
    combos = list(dict.fromkeys(tuple(r) for r in table[others].astype(str).itertuples(index=False))) if others else [()]
    for c, ((method, w, k), g) in enumerate(curves):
        shift = (c - (len(curves) - 1) / 2) * 0.08
        for o, combo in enumerate(combos):
            part = g[(g[others].astype(str) == pd.Series(dict(zip(others, combo)))).all(axis=1)] if others else g
            if not len(part):
                continue
            x = part[key].astype(str).map(where).to_numpy() + shift
            y, lo, hi = (part[col].to_numpy(dtype=float) for col in columns)
            label = curve_label(method, w, k, "", "") if o == 0 else None
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker=_OTHER_MARKERS[o % len(_OTHER_MARKERS)], ms=5, capsize=2,
                        lw=1, color=colors[(method, w, k, "", "")], label=label)
    for v in dict.fromkeys(diverged[key].astype(str)):
        ax.plot([where[v]], [0], marker="x", color="red", ms=9, mew=2, clip_on=False,
                transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(values)), values)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(key + (f"   (markers: {', '.join(others)} = " + "; ".join(
        f"{_OTHER_MARKERS[i % len(_OTHER_MARKERS)]} {'/'.join(c)}" for i, c in enumerate(combos)) + ")"
        if others else "") + ("; red x: diverged" if len(diverged) else ""), fontsize=7)
