/* The sequential parts of the WY chunk kernel (kernels/delta_rule/wy.py) in C, so that each of the n chunk
 * hand-offs costs two BLAS calls instead of three PyTorch dispatches, and the unit-triangular systems are
 * solved by one trsm per chunk instead of an explicit inverse.  Built on first use by kernels/_native.py
 * (plain C: it compiles in about a second, against the BLAS that PyTorch already carries) and called
 * through ctypes; wy.py falls back to the PyTorch path when no compiler is present.
 *
 * Layout: every matrix is row-major float32; arrays are [n, bh, rows, cols] with the given row strides.
 * BLAS is column-major, so a row-major product C = op(A) op(B) is the column-major Cᵀ = op(B)ᵀ op(A)ᵀ
 * (gemm_rm below), and the row-major lower-triangular L Y = X is the column-major Yᵀ Lᵀ = Xᵀ with Lᵀ upper.
 */
#include <stdlib.h>
#include <string.h>

extern void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const float *alpha,
                   const float *a, const int *lda, const float *b, const int *ldb, const float *beta, float *c,
                   const int *ldc);
extern void strsm_(const char *side, const char *uplo, const char *ta, const char *diag, const int *m, const int *n,
                   const float *alpha, const float *a, const int *lda, float *b, const int *ldb);

/* row-major C[m×n] = alpha op(A) op(B) + beta C */
static void gemm_rm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc) {
    sgemm_(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}


/* Forward hand-off and read-out, two products per chunk and head.  qw: per chunk and head the rows [Q; W]
 * ([2C, dk], matrices ms_qw apart); u0 [n, bh, C, dv]; kp [n, bh, dk + C, C] the rows [(diag(ρ)K)ᵀ; P] with
 * P = tril(Γ⊙QKᵀ); gend [n, bh] = γ_C and gam [n, bh, C] = γ, or NULL (no decay); u [n, bh, C, dv] (out);
 * o [batch, T = n·C, heads, dv] (out, written in the caller's layout: bh = batch·heads);
 * starts [n+1, bh, dk, dv] with starts[0] given:
 *   [T_Q; T_W] = [Q; W] S_i,  U_i = U0_i − T_W,  [R_S; R_O] = [(diag(ρ)K)ᵀ; P] U_i,
 *   S_{i+1} = γ_C S_i + R_S,  O_i = diag(γ) T_Q + R_O
 * (the read-out here, while S_i and U_i are in cache: as batched products of 16 or 32 rows it ran at half speed). */
void wy_loop_fwd(int n, int bh, int C, int dk, int dv, const float *qw, long ms_qw, const float *u0, const float *kp,
                 const float *gend, const float *gam, float *u, float *starts, float *o, int heads) {
    const long ld_o = (long)heads * dv, T = (long)n * C;
    const long sz = (long)dk * dv;
    float *t = malloc(sizeof(float) * (2L * C + dk + C) * dv), *r = t + 2L * C * dv;
    if (!t) return;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < bh; j++) {
            const long m = (long)i * bh + j;
            const float *s = starts + m * sz, *uz = u0 + m * C * dv;
            float *uu = u + m * C * dv, *s2 = starts + (m + bh) * sz;
            float *oo = o + ((j / heads) * T + (long)i * C) * ld_o + (long)(j % heads) * dv;
            gemm_rm('N', 'N', 2 * C, dv, dk, 1.0f, qw + m * ms_qw, dk, s, dv, 0.0f, t, dv);
            for (long e = 0; e < (long)C * dv; e++) uu[e] = uz[e] - t[C * dv + e];
            gemm_rm('N', 'N', dk + C, dv, C, 1.0f, kp + m * (dk + C) * C, C, uu, dv, 0.0f, r, dv);
            const float g = gend ? gend[m] : 1.0f;
            for (long e = 0; e < sz; e++) s2[e] = g * s[e] + r[e];
            for (int row = 0; row < C; row++) {
                const float gr = gam ? gam[m * C + row] : 1.0f;
                const float *tq = t + (long)row * dv, *ro = r + sz + (long)row * dv;
                float *orow = oo + (long)row * ld_o;
                for (int c = 0; c < dv; c++) orow[c] = gr * tq[c] + ro[c];
            }
        }
    }
    free(t);
}

/* Backward hand-off, in reverse.  d0 [n, bh, C, dv] = Pᵀ dO (+ dU_out); e [n, bh, dk, dv] = (diag(γ)Q)ᵀ dO (+ dS_out);
 * kw [.., dk, C] = (diag(ρ)K)ᵀ and w [.., C, dk] = W, matrices ms_kw and ms_w apart; du (out) rows of stride dv, matrices of stride ms_du; ds [n+1, bh, dk, dv] with ds[n] given:
 *   dU_i = D0_i + diag(ρ)K_i dS_{i+1},   dS_i = γ_C dS_{i+1} + E_i − W_iᵀ dU_i. */
void wy_loop_bwd(int n, int bh, int C, int dk, int dv, const float *d0, const float *kw, long ms_kw, const float *w,
                 long ms_w,
                 const float *e, const float *gend, float *du, long ms_du, float *ds) {
    const long sz = (long)dk * dv;
    for (int i = n - 1; i >= 0; i--) {
        for (int j = 0; j < bh; j++) {
            const long m = (long)i * bh + j;
            const float *k = kw + m * ms_kw, *wm = w + m * ms_w, *dsn = ds + (m + bh) * sz;
            float *dd = du + m * ms_du, *dsi = ds + m * sz;
            memcpy(dd, d0 + m * C * dv, sizeof(float) * C * dv);
            gemm_rm('T', 'N', C, dv, dk, 1.0f, k, C, dsn, dv, 1.0f, dd, dv);
            const float g = gend ? gend[m] : 1.0f;
            const float *ee = e + m * sz;
            for (long x = 0; x < sz; x++) dsi[x] = ee[x] + g * dsn[x];
            gemm_rm('T', 'N', dk, dv, C, -1.0f, wm, dk, dd, dv, 1.0f, dsi, dv);
        }
    }
}

/* In place, for each of nb systems: X ← (I + tril(M, −1))⁻¹ X, or with trans ← (I + tril(M, −1))⁻ᵀ X.
 * M [nb, C, C] (only its strict lower triangle is read), X [nb, C, m] with matrices ms_x apart. */
void unit_lower_solve(int nb, int C, int m, const float *M, float *X, long ms_x, int trans) {
    const float one = 1.0f;
    const char side = 'R', uplo = 'U', diag = 'U', ta = trans ? 'T' : 'N';
    for (long b = 0; b < nb; b++)
        strsm_(&side, &uplo, &ta, &diag, &m, &C, &one, M + b * C * C, &C, X + b * ms_x, &m);
}

/* The whole inference forward in one pass per block and head (no autograd: nothing is kept for a backward).
 * Per block of C positions, everything below stays in a few kB of cache:
 *   [K; Q] gathered from the caller's strided layout, [KKᵀ; QKᵀ] (one gemm), the decays, L = I + tril(diag(β)Γ⊙KKᵀ, −1)
 *   and P = tril(Γ⊙QKᵀ), [U₀ | W] = L⁻¹ diag(β) [V | diag(γ)K] (two trsm), then the hand-off and read-out of
 *   wy_loop_fwd.  Heads run outermost, so each head's state stays in cache from one block to the next.
 * q, k, v: [n, bh, C, d] views with the given strides (element strides of the n, bh and C axes; d contiguous);
 * beta likewise (one value per row); cum [n, bh, C] float64 cumulative log decays within the block
 * (kernels/_decay.cumulative_log_decay) or NULL (no decay); u [n, bh, C, dv], starts [n+1, bh, dk, dv] with
 * starts[0] given, o [batch, n·C, heads, dv] as in wy_loop_fwd.  keep_states 0: starts is [2, bh, dk, dv] (the state
 * before block i at i mod 2, the final one at n mod 2); keep_u 0: u is [2, bh, C, dv] scratch (writing the
 * multi-megabyte arrays that no caller asked for cost 8% of the pass).
 * Decays: γ_t = exp(b_t), 0 below e^−80 (kernels/_decay.py's LOG_FLOOR).  Γ_ts = exp(b_t − b_s) is γ_t / γ_s when the
 * block decays by at most e^−30 in all (the ratio of two float32 exponentials of float64 sums: a few ulps), else
 * one exp per entry of the float64 difference (hard resets and large steps stay exact). */
#define WY_LOG_FLOOR (-80.0)
#define WY_RATIO_FROM (-30.0)
#include <math.h>

static float decay_of(double x) { return x < WY_LOG_FLOOR ? 0.0f : expf((float)x); }

int wy_fused_fwd(int n, int bh, int C, int dk, int dv, int heads, const float *q, long qn, long qb, long qc,
                 const float *k, long kn, long kb, long kc, const float *v, long vn, long vb, long vc,
                 const float *beta, long bn, long bb, long bc, const double *cum, float *u, float *starts, float *o,
                 int keep_states, int keep_u) {
    const long ld_o = (long)heads * dv, T = (long)n * C, sz = (long)dk * dv;
    const float one = 1.0f;
    const char side = 'R', uplo = 'U', ta = 'N', diag = 'U';
    /* workspace: kqw [3C, dk], sc [2C, C], lm [C, C], kp [dk + C, C], x [C, dv + dk], t [2C, dv], r [dk + C, dv],
     * gam, rho, inv, bet [C] */
    const int mx = dv + dk;
    const long ws = 3L * C * dk + 2L * C * C + (long)C * C + (long)(dk + C) * C + (long)C * mx + 2L * C * dv +
                    (long)(dk + C) * dv + 4L * C;
    float *buf = calloc(ws, sizeof(float));
    if (!buf) return 1;
    float *kqw = buf, *sc = kqw + 3L * C * dk, *lm = sc + 2L * C * C, *kp = lm + (long)C * C,
          *u0 = kp + (long)(dk + C) * C, *tt = u0 + (long)C * mx, *r = tt + 2L * C * dv, *gam = r + (long)(dk + C) * dv,
          *rho = gam + C, *inv = rho + C, *bet = inv + C;
    float *kk = kqw, *qq = kqw + (long)C * dk, *w = kqw + 2L * C * dk, *p = kp + (long)dk * C;
    for (int j = 0; j < bh; j++) {
        float *oo_head = o + (long)(j / heads) * T * ld_o + (long)(j % heads) * dv;
        for (int i = 0; i < n; i++) {
            const long m = (long)i * bh + j;
            const float *qs = q + i * qn + j * qb, *ks = k + i * kn + j * kb, *vs = v + i * vn + j * vb,
                        *bs = beta + i * bn + j * bb;
            /* without keep_states, starts holds two states per head (block i's at i mod 2); without keep_u, u two blocks */
            const long si = keep_states ? m : (long)(i & 1) * bh + j, so = keep_states ? m + bh : (long)((i + 1) & 1) * bh + j;
            const float *s = starts + si * sz;
            float *s2 = starts + so * sz, *uu = u + (keep_u ? m : (long)(i & 1) * bh + j) * C * dv;
            if (i + 1 < n) /* the next block's rows, while this one computes (measured: 4% of the pass) */
                for (int t = 0; t < C; t++) {
                    for (int c = 0; c < dk; c += 16) {
                        __builtin_prefetch(ks + kn + t * kc + c);
                        __builtin_prefetch(qs + qn + t * qc + c);
                    }
                    for (int c = 0; c < dv; c += 16) __builtin_prefetch(vs + vn + t * vc + c);
                }
            for (int t = 0; t < C; t++) {
                memcpy(kk + (long)t * dk, ks + t * kc, sizeof(float) * dk);
                memcpy(qq + (long)t * dk, qs + t * qc, sizeof(float) * dk);
                bet[t] = bs[t * bc];
            }
            int ratio = 1;
            if (cum) {
                const double *b = cum + m * C, bC = b[C - 1];
                ratio = bC >= WY_RATIO_FROM;
                for (int t = 0; t < C; t++) {
                    gam[t] = decay_of(b[t]);
                    rho[t] = decay_of(bC - b[t]);
                    inv[t] = ratio ? 1.0f / gam[t] : 0.0f;
                }
            } else {
                for (int t = 0; t < C; t++) gam[t] = rho[t] = inv[t] = 1.0f;
            }
            gemm_rm('N', 'T', 2 * C, C, dk, 1.0f, kqw, dk, kk, dk, 0.0f, sc, C); /* [KKᵀ; QKᵀ] */
            const float *qk = sc + (long)C * C;
            for (int t = 0; t < C; t++) {
                float *lrow = lm + (long)t * C, *prow = p + (long)t * C;
                const float *krow = sc + (long)t * C, *qrow = qk + (long)t * C;
                if (ratio) {
                    const float gt = gam[t], bt = bet[t];
                    for (int x = 0; x < t; x++) {
                        const float d = gt * inv[x];
                        lrow[x] = bt * krow[x] * d;
                        prow[x] = qrow[x] * d;
                    }
                } else {
                    const double *b = cum + m * C;
                    for (int x = 0; x < t; x++) {
                        const float d = decay_of(b[t] - b[x]);
                        lrow[x] = bet[t] * krow[x] * d;
                        prow[x] = qrow[x] * d;
                    }
                }
                prow[t] = qrow[t];
                for (int x = t + 1; x < C; x++) prow[x] = 0.0f;
            }
            for (int t = 0; t < C; t++) { /* (diag(ρ)K)ᵀ, diag(β)V, diag(βγ)K */
                const float *krow = kk + (long)t * dk, *vrow = vs + t * vc;
                const float bt = bet[t], bg = bet[t] * gam[t];
                float *xrow = u0 + (long)t * mx;
                for (int c = 0; c < dv; c++) xrow[c] = bt * vrow[c];
                for (int c = 0; c < dk; c++) xrow[dv + c] = bg * krow[c];
            }
            strsm_(&side, &uplo, &ta, &diag, &mx, &C, &one, lm, &C, u0, &mx); /* [U₀ | W] = L⁻¹ diag(β) [V | γK] */
            for (int t = 0; t < C; t++) memcpy(w + (long)t * dk, u0 + (long)t * mx + dv, sizeof(float) * dk);
            gemm_rm('N', 'N', 2 * C, dv, dk, 1.0f, qq, dk, s, dv, 0.0f, tt, dv); /* [Q; W] S */
            for (int t = 0; t < C; t++)
                for (int c = 0; c < dv; c++)
                    uu[(long)t * dv + c] = u0[(long)t * mx + c] - tt[(long)(C + t) * dv + c];
            gemm_rm('N', 'N', C, dv, C, 1.0f, p, C, uu, dv, 0.0f, r + sz, dv); /* P U */
            for (int t = 0; t < C; t++)
                for (int c = 0; c < dv; c++) tt[(long)(C + t) * dv + c] = rho[t] * uu[(long)t * dv + c];
            gemm_rm('T', 'N', dk, dv, C, 1.0f, kk, dk, tt + (long)C * dv, dv, 0.0f, r, dv); /* Kᵀ diag(ρ) U */
            const float g = gam[C - 1];
            for (long e = 0; e < sz; e++) s2[e] = g * s[e] + r[e];
            float *oo = oo_head + (long)i * C * ld_o;
            for (int t = 0; t < C; t++) {
                const float gr = gam[t], *tq = tt + (long)t * dv, *ro = r + sz + (long)t * dv;
                float *orow = oo + (long)t * ld_o;
                for (int c = 0; c < dv; c++) orow[c] = gr * tq[c] + ro[c];
            }
        }
    }
    free(buf);
    return 0;
}
