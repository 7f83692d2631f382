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

static void copy_rows(float *dst, int ldd, const float *src, int lds, int rows, int cols) {
    for (int r = 0; r < rows; r++) memcpy(dst + (long)r * ldd, src + (long)r * lds, sizeof(float) * cols);
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
