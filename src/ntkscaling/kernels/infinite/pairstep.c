/* One image-pair step of the infinite-width recursion, fused, for the CPU in float64 (see kernels/infinite/api.py and
 * kernels/infinite/native.py, which builds this file and calls it through ctypes).
 *
 * For each pair n of a block and each output pixel p of the first image, the 3x3 conv average of the
 * previous covariances over the whole slab of second-image pixels p' (the sum of K(p + d, p' + d) over the
 * 9 shifts d, zero outside the image), then the affine map and the ReLU step, then optionally the 2x2
 * average pool over both images, all while the slab is in the cache. The torch path computes the same
 * numbers with one pass over memory per operation.
 *
 * Layouts (C order, float64): S, T (N, H, W, H, W): Sigma and Theta before the conv (T NULL: Theta' =
 * Sigma', the first layer), or with C > 0 (the first layer) images xa (A, C, H, W), xb (B, C, H, W) instead
 * of S, Sigma before the conv being the sum over channels of xa xb per pixel pair; qa (A, H, W),
 * qb (B, H, W): each image's variance before this ReLU, pair n being (n / B, n % B) (B = 0: (n, n), each
 * image with itself); outputs (N, H, W, H, W), or (N, H/2, W/2, H/2, W/2) when pooling. Work is split in
 * units of one output row (two when pooling) of one pair, so that threads never write the same entries.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* atan(u) = u * sum_k ATAN_C[k] u^(2k) for |u| <= tan(pi/12): Chebyshev interpolant of atan(sqrt(z))/sqrt(z)
 * on z in [0, tan(pi/12)^2], degree 8, computed in 50-digit arithmetic: max error 8e-18 absolute, below
 * 1 ulp (tests/test_native.py checks it against mpmath). */
static const double ATAN_C[9] = {
    1.0, -0.3333333333332988, 0.19999999998714044, -0.14285714101112637, 0.11111097804486184,
    -0.09090368365760128, 0.07679323048884193, -0.0648280271071934, 0.044375920079045915};
static const double TAN_PI_12 = 0.2679491924311227;
static const double SQRT3 = 1.7320508075688772;
static const double PI = 3.141592653589793;

/* atan2(y, x) for y >= 0 (the ReLU angle), branch-free so that the compiler vectorizes the loop around it:
 * t = min(|x|, y) / max(|x|, y) in [0, 1], reduced by pi/6 above tan(pi/12) (atan(t) = pi/6 +
 * atan((sqrt(3) t - 1) / (sqrt(3) + t))) with one division, then mirrored into [0, pi]. */
static inline double angle(double y, double x) {
    double ax = fabs(x);
    double hi = ax > y ? ax : y, lo = ax > y ? y : ax;
    int big = lo > TAN_PI_12 * hi;
    double num = big ? SQRT3 * lo - hi : lo, den = big ? SQRT3 * hi + lo : hi;
    double u = num / (den > 0.0 ? den : 1.0);
    double z = u * u;
    /* Estrin's scheme: a shorter dependency chain than Horner's (measured 1.2x faster) */
    double z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    double p01 = ATAN_C[0] + ATAN_C[1] * z, p23 = ATAN_C[2] + ATAN_C[3] * z;
    double p45 = ATAN_C[4] + ATAN_C[5] * z, p67 = ATAN_C[6] + ATAN_C[7] * z;
    double acc = (p01 + p23 * z2) + (p45 + p67 * z2) * z4 + ATAN_C[8] * z8;
    double r = u * acc + (big ? PI / 6 : 0.0);
    r = y > ax ? PI / 2 - r : r;
    return x < 0.0 ? PI - r : r;  /* x is never -0.0 here: it is computed as (...) * w2 + b2 */
}

/* E = the 3 slabs m, c, p of consecutive first-image rows summed with their second-image rows shifted
 * along (k - W, k, k + W in the flat (H, W) slab), zero outside: the row half of the separable conv sum */
static void row_sum(double *restrict E, const double *restrict m, const double *restrict c,
                    const double *restrict p, int64_t P, int64_t W) {
    if (P == W) {  /* a single row: no shifted neighbours */
        for (int64_t k = 0; k < P; ++k) E[k] = c[k];
        return;
    }
    for (int64_t k = 0; k < W; ++k) E[k] = c[k] + p[k + W];
    for (int64_t k = W; k < P - W; ++k) E[k] = m[k - W] + c[k] + p[k + W];
    for (int64_t k = P - W; k < P; ++k) E[k] = m[k - W] + c[k];
}

/* The first layer's row sums straight from the images (no input covariance in memory): E = sum over
 * channels c of am[c] xb_c[k - W] + a0[c] xb_c[k] + ap[c] xb_c[k + W], where a*[c] are the first image's
 * pixels in rows h - 1, h, h + 1 of column w (0 outside) and xb_c the second image's channel c, (H, W). */
static void row_products(double *restrict E, const double *am, const double *a0, const double *ap,
                         const double *restrict xb, int64_t C, int64_t P, int64_t W) {
    for (int64_t k = 0; k < P; ++k) E[k] = 0.0;
    for (int64_t c = 0; c < C; ++c) {
        const double *restrict x = xb + c * P;
        const double m = am[c], z = a0[c], p = ap[c];
        if (P == W) {  /* a single row */
            for (int64_t k = 0; k < P; ++k) E[k] += z * x[k];
            continue;
        }
        for (int64_t k = 0; k < W; ++k) E[k] += z * x[k] + p * x[k + W];
        for (int64_t k = W; k < P - W; ++k) E[k] += m * x[k - W] + z * x[k] + p * x[k + W];
        for (int64_t k = P - W; k < P; ++k) E[k] += m * x[k - W] + z * x[k];
    }
}

/* The ReLU step on one slab of conv outputs, whose sum over the 3 column shifts is formed here. */
static void relu_slab(double *restrict oS, double *restrict oT,
                      const double *restrict mS, const double *restrict cS, const double *restrict pS,
                      const double *restrict mT, const double *restrict cT, const double *restrict pT,
                      const double *restrict maskL, const double *restrict maskR, const double *restrict qb,
                      double q, double w2, double tw2, double b2, int64_t P) {
    const double inv2pi = 1.0 / (2.0 * PI);
    for (int64_t k = 0; k < P; ++k) {
        double Sc = (mS[k - 1] * maskL[k] + cS[k] + pS[k + 1] * maskR[k]) * w2 + b2;
        double Tc = (mT[k - 1] * maskL[k] + cT[k] + pT[k + 1] * maskR[k]) * tw2 + Sc;
        double d = q * qb[k] - Sc * Sc;
        double s = sqrt(d > 0.0 ? d : 0.0);
        double pm = PI - angle(s, Sc);
        oS[k] = (s + pm * Sc) * inv2pi;
        oT[k] = Tc * pm * inv2pi;
    }
}

int pair_step(int64_t unit_lo, int64_t unit_hi, int64_t B, int64_t H, int64_t W,
              const double *S, const double *T, const double *xa, const double *xb, int64_t C,
              const double *qa, const double *qb, double w2, double b2, int pool, double *outS, double *outT) {
    const int64_t P = H * W, Ho = pool ? H / 2 : H, Wo = pool ? W / 2 : W, Po = Ho * Wo;
    const int64_t rows = pool ? 2 : 1, units_per_pair = H / rows, L = P + 2;
    /* scratch: 3 row sums for Sigma and 3 for Theta and a zero slab, each padded by one entry at both ends
     * (read at k - 1 and k + 1 then masked out); column masks; the ReLU outputs when pooling */
    double *buf = calloc(7 * L + 4 * P + 3 * C, sizeof(double));
    if (!buf) return 1;
    double *ES[3], *ET[3];
    for (int r = 0; r < 3; ++r) {
        ES[r] = buf + r * L + 1;
        ET[r] = buf + (3 + r) * L + 1;
    }
    const double *zero = buf + 6 * L + 1;
    double *maskL = buf + 7 * L, *maskR = maskL + P, *rS = maskR + P, *rT = rS + P, *pix = rT + P;
    for (int64_t k = 0; k < P; ++k) {
        maskL[k] = k % W != 0;      /* a left neighbour (w' - 1) exists */
        maskR[k] = k % W != W - 1;  /* a right neighbour (w' + 1) exists */
    }
    const double tw2 = T ? w2 : 0.0;  /* Theta' = w2 Theta + Sigma' (first: Sigma') */
    for (int64_t unit = unit_lo; unit < unit_hi; ++unit) {
        const int64_t n = unit / units_per_pair, hu = unit % units_per_pair;
        const int64_t i = B ? n / B : n, j = B ? n % B : n;
        const double *Sn = C ? NULL : S + n * P * P, *Tn = T ? T + n * P * P : NULL;
        const double *qbj = qb + j * P;
        if (pool) {
            memset(outS + (n * Ho + hu) * Wo * Po, 0, Wo * Po * sizeof(double));
            memset(outT + (n * Ho + hu) * Wo * Po, 0, Wo * Po * sizeof(double));
        }
        for (int64_t h = hu * rows; h < (hu + 1) * rows; ++h) {
            /* the first image's rows h - 1, h, h + 1: inside the image? their covariances (NULL outside) */
            int ok[3];
            const double *rowS[3], *rowT[3];
            for (int r = 0; r < 3; ++r) {
                ok[r] = h + r - 1 >= 0 && h + r - 1 < H;
                rowS[r] = ok[r] && Sn ? Sn + (h + r - 1) * W * P : NULL;
                rowT[r] = ok[r] && Tn ? Tn + (h + r - 1) * W * P : NULL;
            }
            for (int64_t w = -1; w < W; ++w) {
                if (w + 1 < W && C) {  /* the first layer: from the images */
                    for (int r = 0; r < 3; ++r)
                        for (int64_t c = 0; c < C; ++c)
                            pix[r * C + c] = ok[r] ? xa[((i * C + c) * H + h + r - 1) * W + w + 1] : 0.0;
                    row_products(ES[(w + 1) % 3], pix, pix + C, pix + 2 * C, xb + j * C * P, C, P, W);
                } else if (w + 1 < W) {  /* row sums of column w + 1 into the ring (slot (w + 1) % 3) */
                    const int64_t at = (w + 1) * P;
                    row_sum(ES[(w + 1) % 3], rowS[0] ? rowS[0] + at : zero, rowS[1] + at,
                            rowS[2] ? rowS[2] + at : zero, P, W);
                    if (Tn)
                        row_sum(ET[(w + 1) % 3], rowT[0] ? rowT[0] + at : zero, rowT[1] + at,
                                rowT[2] ? rowT[2] + at : zero, P, W);
                }
                if (w < 0) continue;
                /* column half of the conv sum: C[k] = E_{w-1}[k - 1] + E_w[k] + E_{w+1}[k + 1], masked */
                const double *mS = w > 0 ? ES[(w + 2) % 3] : zero, *cS = ES[w % 3];
                const double *pS = w + 1 < W ? ES[(w + 1) % 3] : zero;
                const double *mT = Tn ? (w > 0 ? ET[(w + 2) % 3] : zero) : mS;
                const double *cT = Tn ? ET[w % 3] : cS;
                const double *pT = Tn ? (w + 1 < W ? ET[(w + 1) % 3] : zero) : pS;
                const double q = qa[(i * H + h) * W + w];
                double *oS = pool ? rS : outS + (n * P + h * W + w) * P;
                double *oT = pool ? rT : outT + (n * P + h * W + w) * P;
                relu_slab(oS, oT, mS, cS, pS, mT, cT, pT, maskL, maskR, qbj, q, w2, tw2, b2, P);
                if (!pool) continue;
                double *restrict dS = outS + ((n * Ho + h / 2) * Wo + w / 2) * Po;
                double *restrict dT = outT + ((n * Ho + h / 2) * Wo + w / 2) * Po;
                for (int64_t y = 0; y < Ho; ++y) {
                    const double *s0 = rS + 2 * y * W, *s1 = s0 + W, *t0 = rT + 2 * y * W, *t1 = t0 + W;
                    for (int64_t x = 0; x < Wo; ++x) {
                        dS[y * Wo + x] += (s0[2 * x] + s0[2 * x + 1] + s1[2 * x] + s1[2 * x + 1]) * 0.0625;
                        dT[y * Wo + x] += (t0[2 * x] + t0[2 * x + 1] + t1[2 * x] + t1[2 * x + 1]) * 0.0625;
                    }
                }
            }
        }
    }
    free(buf);
    return 0;
}
