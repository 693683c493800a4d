/* The body of site.c, included once per floating type (real, NAME, EXP). */

/* pooled[n] = (mean_c x, max_c x); ties[n, p] = how many channels reach the max. */
void NAME(pool)(const real *x, i64 N, i64 C, i64 P, real *restrict pooled, real *restrict ties,
                          int threads) {
    #pragma omp parallel for num_threads(threads) if(threads > 1) schedule(static)
    for (i64 n = 0; n < N; n++) {
        const real *xn = x + n * C * P;
        real *mean = pooled + n * 2 * P, *top = mean + P, *tie = ties + n * P;
        for (i64 p = 0; p < P; p++) { mean[p] = xn[p]; top[p] = xn[p]; tie[p] = (real)1; }
        for (i64 c = 1; c < C; c++) {
            const real *xc = xn + c * P;
            for (i64 p = 0; p < P; p++) {
                real v = xc[p], m = top[p];
                mean[p] += v;
                tie[p] = v > m ? (real)1 : (v == m ? tie[p] + (real)1 : tie[p]);
                top[p] = v > m ? v : m;
            }
        }
        for (i64 p = 0; p < P; p++) mean[p] /= (real)C;
    }
}

/* The gate s = sigmoid(beta_c (x - T)); backward recomputes it rather than keep a full-size
   map per site. exp is only taken of -|z|, which cannot overflow: under -ffast-math an
   infinite exp is not handled (1 / (1 + inf) may come out NaN), and a large beta saturates
   the gate often. */
static inline real NAME(gate_of)(real x, real t, real b, real *complement) {
    real z = b * (x - t), e = EXP(-fabs(z)), big = (real)1 / ((real)1 + e), small = e * big;
    *complement = z >= 0 ? small : big;  /* 1 - s without the cancellation of 1 - s */
    return z >= 0 ? big : small;
}

/* y = x s. thr: N x G x P; beta: C values, or one when beta_step is 0. */
void NAME(gate)(const real *x, const real *thr, const real *beta, i64 beta_step,
                i64 N, i64 C, i64 G, i64 P, real *restrict y, int threads) {
    i64 per_group = C / G;
    #pragma omp parallel for num_threads(threads) if(threads > 1) schedule(static)
    for (i64 n = 0; n < N; n++) {
        for (i64 c = 0; c < C; c++) {
            i64 at = (n * C + c) * P;
            const real *xc = x + at, *t = thr + (n * G + c / per_group) * P;
            real b = beta[c * beta_step], *yc = y + at;
            for (i64 p = 0; p < P; p++) {
                real unused;
                yc[p] = xc[p] * NAME(gate_of)(xc[p], t[p], b, &unused);
            }
        }
    }
}

/* With q = g x s (1 - s): grad_x = g s + beta_c q; grad_thr[n, g] = -sum over the group's
   channels of beta_c q; slope[n, c] = sum_p q (x - T), from which beta's gradient follows. */
void NAME(gate_backward)(const real *g, const real *x, const real *thr, const real *beta,
                         i64 beta_step, i64 N, i64 C, i64 G, i64 P, real *restrict grad_x,
                         real *restrict grad_thr, double *slope, int threads) {
    i64 per_group = C / G;
    #pragma omp parallel for num_threads(threads) if(threads > 1) schedule(static)
    for (i64 n = 0; n < N; n++) {
        for (i64 p = 0; p < G * P; p++) grad_thr[n * G * P + p] = 0;
        for (i64 c = 0; c < C; c++) {
            i64 at = (n * C + c) * P;
            const real *gc = g + at, *xc = x + at, *t = thr + (n * G + c / per_group) * P;
            real b = beta[c * beta_step], *gx = grad_x + at, *gt = grad_thr + (n * G + c / per_group) * P;
            real sum = 0;
            for (i64 p = 0; p < P; p++) {
                real rest, gate = NAME(gate_of)(xc[p], t[p], b, &rest), q = gc[p] * xc[p] * gate * rest;
                gx[p] = gc[p] * gate + b * q;
                gt[p] -= b * q;
                sum += q * (xc[p] - t[p]);
            }
            slope[n * C + c] = (double)sum;
        }
    }
}

/* grad_x += mean_share + [x == max] max_share, where mean_share = grad_mean / C and
   max_share = grad_max / ties (a tie splits the max's gradient evenly, as amax's backward
   does); both N x P. */
void NAME(pool_backward)(const real *x, const real *pooled, const real *mean_share,
                                   const real *max_share, i64 N, i64 C, i64 P, real *grad_x,
                                   int threads) {
    #pragma omp parallel for num_threads(threads) if(threads > 1) schedule(static)
    for (i64 n = 0; n < N; n++) {
        const real *top = pooled + (2 * n + 1) * P;
        const real *to_all = mean_share + n * P, *to_max = max_share + n * P;
        for (i64 c = 0; c < C; c++) {
            i64 at = (n * C + c) * P;
            const real *xc = x + at;
            real *gx = grad_x + at;
            for (i64 p = 0; p < P; p++)
                gx[p] += to_all[p] + (real)(xc[p] == top[p]) * to_max[p];
        }
    }
}

