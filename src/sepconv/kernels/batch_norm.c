/* Batch normalization (and ReLU), training and inference, over a (rows, channels) float32
 * array: the channels-last layout of an image batch, one row per position. Compiled at
 * first use by sepconv.kernels._native. Statistics accumulate in double. */
#include <stddef.h>
#include <string.h>
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* d where o > 0, else +0 (also for an infinite or NaN d), without a branch: vectorizes. */
static inline float masked(float d, float o) {
    unsigned int u;
    memcpy(&u, &d, sizeof u);
    u &= -(unsigned int)(o > 0.0f);
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Per-channel sums of x and x * x. */
CLONES static void range_sums(const float *x, long cols, long r0, long r1, double *sum, double *sumsq) {
    for (long c = 0; c < cols; c++) { sum[c] = 0.0; sumsq[c] = 0.0; }
    for (long r = r0; r < r1; r++) {
        const float *row = x + r * cols;
        for (long c = 0; c < cols; c++) { double v = row[c]; sum[c] += v; sumsq[c] += v * v; }
    }
}

/* y = x * scale + shift, then max(y, 0) when relu (NaN stays NaN, as in torch's clamp). */
CLONES static void range_normalize(const float *x, float *y, long cols, long r0, long r1, const float *scale,
                            const float *shift, int relu) {
    for (long r = r0; r < r1; r++) {
        const float *in = x + r * cols; float *out = y + r * cols;
        if (relu) for (long c = 0; c < cols; c++) {
            float v = in[c] * scale[c] + shift[c];
            out[c] = v < 0.0f ? 0.0f : v;
        }
        else for (long c = 0; c < cols; c++) out[c] = in[c] * scale[c] + shift[c];
    }
}

/* g = dy, masked where y <= 0 when relu; sums of g and g * (x - mean). */
CLONES static void range_gradient_sums(const float *dy, const float *y, const float *x, long cols, long r0, long r1,
                                const float *mean, int relu, double *sum_g, double *sum_gx) {
    for (long c = 0; c < cols; c++) { sum_g[c] = 0.0; sum_gx[c] = 0.0; }
    for (long r = r0; r < r1; r++) {
        const float *d = dy + r * cols, *o = y + r * cols, *in = x + r * cols;
        if (relu) for (long c = 0; c < cols; c++) {
            float g = masked(d[c], o[c]);
            sum_g[c] += g; sum_gx[c] += (double)(g * (in[c] - mean[c]));
        }
        else for (long c = 0; c < cols; c++) {
            float g = d[c];
            sum_g[c] += g; sum_gx[c] += (double)(g * (in[c] - mean[c]));
        }
    }
}

/* dx = a * g + b * x + k, g as above. */
CLONES static void range_gradient(const float *dy, const float *y, const float *x, float *dx, long cols, long r0,
                                 long r1, const float *a, const float *b, const float *k, int relu) {
    for (long r = r0; r < r1; r++) {
        const float *d = dy + r * cols, *o = y + r * cols, *in = x + r * cols; float *out = dx + r * cols;
        if (relu) for (long c = 0; c < cols; c++) {
            float g = masked(d[c], o[c]);
            out[c] = a[c] * g + b[c] * in[c] + k[c];
        }
        else for (long c = 0; c < cols; c++) out[c] = a[c] * d[c] + b[c] * in[c] + k[c];
    }
}

/* The entry points: rows split into `parts` ranges run by OpenMP threads (torch's own team
 * when torch's libgomp is loaded), partial sums per range in `out` (parts, 2, cols). */
#define RANGE(p) (rows * (p) / parts), (rows * ((p) + 1) / parts)

void bn_sums(const float *x, long rows, long cols, long parts, double *out) {
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < parts; p++) range_sums(x, cols, RANGE(p), out + 2 * cols * p, out + 2 * cols * p + cols);
}

void bn_normalize(const float *x, float *y, long rows, long cols, long parts, const float *scale, const float *shift,
                  int relu) {
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < parts; p++) range_normalize(x, y, cols, RANGE(p), scale, shift, relu);
}

void bn_gradient_sums(const float *dy, const float *y, const float *x, long rows, long cols, long parts,
                      const float *mean, int relu, double *out) {
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < parts; p++)
        range_gradient_sums(dy, y, x, cols, RANGE(p), mean, relu, out + 2 * cols * p, out + 2 * cols * p + cols);
}

void bn_gradient(const float *dy, const float *y, const float *x, float *dx, long rows, long cols, long parts,
                 const float *a, const float *b, const float *k, int relu) {
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < parts; p++) range_gradient(dy, y, x, dx, cols, RANGE(p), a, b, k, relu);
}
