// rnnkit's compiled inner step: the element-wise work of one kernel step (gates, nonlinearities,
// state update, mask; and their backward) as one loop over the batch, one call per step. The
// equations are those of the Python kernels that call these (src/rnnkit/kernels/*.py).
//
// Plain C++ with a C ABI, loaded with ctypes (rnnkit/kernels/fused/__init__.py): no torch
// headers, so it builds in about a second. Compiled with -O3 -ffast-math -march=native so that
// exp and tanh vectorize through glibc's libmvec (and linked without -ffast-math, so that loading
// it leaves the process's floating-point flags alone).
//
// Every array is (B, ·) row-major with unit column stride; sX is the row stride of X in elements
// (0 for a row broadcast over the batch). mask, when not null, holds one bool per row (row stride
// sm): true inside the sequence, false past its end.

#include <cmath>
#include <cstdint>

namespace {

using i64 = std::int64_t;

template <typename T>
inline T sigmoid(T a) {
  return T(1) / (T(1) + std::exp(-a));
}

inline bool keep(const bool* mask, i64 sm, i64 b) { return mask == nullptr || mask[b * sm]; }

// GRU (reset_after=True), forward. In: P = W_hh h + b_hh (B, 3H), x = xg_t (B, 3H),
// h = h_{t-1} (B, H). Out: P <- [r, z, p_n], n <- n, ho <- h' = n + z (h - n), or h_{t-1} where
// the mask is false.
template <typename T>
void gru_fwd(i64 B, i64 H, T* P, i64 sP, const T* x, i64 sx, const T* h, i64 sh, T* n, i64 sn,
             T* ho, i64 sho, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    T* p = P + b * sP;
    const T* xr = x + b * sx;
    const T* hr = h + b * sh;
    T* nr = n + b * sn;
    T* out = ho + b * sho;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T r = sigmoid<T>(p[j] + xr[j]);
      const T z = sigmoid<T>(p[H + j] + xr[H + j]);
      const T nn = std::tanh(xr[2 * H + j] + r * p[2 * H + j]);
      p[j] = r;
      p[H + j] = z;
      nr[j] = nn;
      out[j] = nn + z * (hr[j] - nn);
    }
    if (!keep(mask, sm, b))
      for (i64 j = 0; j < H; ++j) out[j] = hr[j];
  }
}

// GRU (reset_after=True), backward. In: dh = δh_t, gy = ∂L_t/∂h_t (B, H), gates = [r, z, p_n]
// (B, 3H), dP = the factors [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂p_n] (B, 3H). Out: g <- m (gy + dh),
// dP <- g ⊙ dP, carry <- g ⊙ z, or dh where the mask is false (δh_{t-1} = carry + dP W_hh).
template <typename T>
void gru_bwd(i64 B, i64 H, const T* dh, i64 sdh, const T* gy, i64 sgy, const T* gates, i64 sgt,
             T* dP, i64 sdP, T* g, i64 sg, T* carry, i64 sc, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    const T* d = dh + b * sdh;
    const T* y = gy + b * sgy;
    const T* z = gates + b * sgt + H;
    T* p = dP + b * sdP;
    T* go = g + b * sg;
    T* c = carry + b * sc;
    if (keep(mask, sm, b)) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) {
        const T gj = d[j] + y[j];
        go[j] = gj;
        p[j] *= gj;
        p[H + j] *= gj;
        p[2 * H + j] *= gj;
        c[j] = gj * z[j];
      }
    } else {
      for (i64 j = 0; j < H; ++j) {
        go[j] = p[j] = p[H + j] = p[2 * H + j] = T(0);
        c[j] = d[j];
      }
    }
  }
}

// GRU (reset_after), the backward's factors over R rows at once (all T·B rows, contiguous): from
// gates [r, z, p_n] (R, 3H), n (R, H) and h_prev (R, H), dn <- ∂h'/∂a_n = (1 - z)(1 - n²) and
// dP <- [dn p_n r (1 - r), (h_prev - n) z (1 - z), dn r], which the backward loop multiplies by g.
template <typename T>
void gru_factors(i64 R, i64 H, const T* gates, const T* n, const T* hp, T* dP, T* dn) {
  for (i64 q = 0; q < R; ++q) {
    const T* g = gates + q * 3 * H;
    const T* nq = n + q * H;
    const T* h = hp + q * H;
    T* d = dP + q * 3 * H;
    T* e = dn + q * H;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T r = g[j], z = g[H + j], nn = nq[j];
      const T dnda = (T(1) - z) * (T(1) - nn * nn);
      e[j] = dnda;
      d[j] = dnda * g[2 * H + j] * r * (T(1) - r);
      d[H + j] = (h[j] - nn) * z * (T(1) - z);
      d[2 * H + j] = dnda * r;
    }
  }
}

// GRU (reset_after=False), forward, the first half of a step. In: A = h W_h{rz}ᵀ (B, 2H),
// x = [x_r, x_z] + b_h{rz} (B, 2H), h = h_{t-1} (B, H). Out: A <- [r, z], s <- r ⊙ h.
template <typename T>
void grub_gates(i64 B, i64 H, T* A, i64 sA, const T* x, i64 sx, const T* h, i64 sh, T* s,
                i64 ss) {
  for (i64 b = 0; b < B; ++b) {
    T* a = A + b * sA;
    const T* xr = x + b * sx;
    const T* hr = h + b * sh;
    T* sr = s + b * ss;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T r = sigmoid<T>(a[j] + xr[j]);
      a[j] = r;
      a[H + j] = sigmoid<T>(a[H + j] + xr[H + j]);
      sr[j] = r * hr[j];
    }
  }
}

// GRU (reset_after=False), forward, the second half. In: N = s W_hnᵀ (B, H), x = x_n + b_hn,
// z (B, H, row stride sz), h = h_{t-1}. Out: N <- n = tanh(N + x), ho <- h' = n + z (h - n), or
// h_{t-1} where the mask is false.
template <typename T>
void grub_state(i64 B, i64 H, T* N, i64 sN, const T* x, i64 sx, const T* z, i64 sz, const T* h,
                i64 sh, T* ho, i64 sho, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    T* nr = N + b * sN;
    const T* xr = x + b * sx;
    const T* zr = z + b * sz;
    const T* hr = h + b * sh;
    T* out = ho + b * sho;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T nn = std::tanh(nr[j] + xr[j]);
      nr[j] = nn;
      out[j] = nn + zr[j] * (hr[j] - nn);
    }
    if (!keep(mask, sm, b))
      for (i64 j = 0; j < H; ++j) out[j] = hr[j];
  }
}

// GRU (reset_after=False), the backward's factors over R rows at once (contiguous): from
// gates [r, z] (R, 2H), n and h_prev (R, H), dA <- [h_prev r (1 - r), (h_prev - n) z (1 - z),
// (1 - z)(1 - n²)] (R, 3H), which the backward loop multiplies by ∂L/∂s, g and g.
template <typename T>
void grub_factors(i64 R, i64 H, const T* gates, const T* n, const T* hp, T* dA) {
  for (i64 q = 0; q < R; ++q) {
    const T* g = gates + q * 2 * H;
    const T* nq = n + q * H;
    const T* h = hp + q * H;
    T* d = dA + q * 3 * H;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T r = g[j], z = g[H + j], nn = nq[j];
      d[j] = h[j] * r * (T(1) - r);
      d[H + j] = (h[j] - nn) * z * (T(1) - z);
      d[2 * H + j] = (T(1) - z) * (T(1) - nn * nn);
    }
  }
}

// GRU (reset_after=False), backward, the first half of a step. In: dh = δh_t, gy = ∂L_t/∂h_t,
// dA = the factors (B, 3H). Out: g <- m (gy + dh), dA's z and n parts <- g ⊙ their factors
// (∂L/∂a_z, ∂L/∂a_n; zero where the mask is false, as is the r part).
template <typename T>
void grub_bwd_a(i64 B, i64 H, const T* dh, i64 sdh, const T* gy, i64 sgy, T* dA, i64 sdA, T* g,
                i64 sg, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    const T* d = dh + b * sdh;
    const T* y = gy + b * sgy;
    T* p = dA + b * sdA;
    T* go = g + b * sg;
    if (keep(mask, sm, b)) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) {
        const T gj = d[j] + y[j];
        go[j] = gj;
        p[H + j] *= gj;
        p[2 * H + j] *= gj;
      }
    } else {
      for (i64 j = 0; j < H; ++j) go[j] = p[j] = p[H + j] = p[2 * H + j] = T(0);
    }
  }
}

// GRU (reset_after=False), backward, the second half. In: ds = ∂L/∂s = ∂L/∂a_n W_hn (B, H),
// g, gates [r, z] (B, 2H), dh = δh_t. Out: dA's r part <- ds ⊙ its factor (∂L/∂a_r),
// carry <- g ⊙ z + ds ⊙ r, or dh where the mask is false (δh_{t-1} = carry + dA_{rz} W_h{rz}).
template <typename T>
void grub_bwd_b(i64 B, i64 H, const T* ds, i64 sds, const T* g, i64 sg, const T* gates, i64 sgt,
                const T* dh, i64 sdh, T* dA, i64 sdA, T* carry, i64 sc, const bool* mask,
                i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    const T* dsr = ds + b * sds;
    const T* gr = g + b * sg;
    const T* r = gates + b * sgt;
    const T* z = r + H;
    const T* d = dh + b * sdh;
    T* p = dA + b * sdA;
    T* c = carry + b * sc;
    if (keep(mask, sm, b)) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) {
        p[j] *= dsr[j];
        c[j] = gr[j] * z[j] + dsr[j] * r[j];
      }
    } else {
      for (i64 j = 0; j < H; ++j) c[j] = d[j];
    }
  }
}

// Elman, forward. f: 0 tanh, 1 relu, 2 sigmoid, 3 identity. a (B, H) holds a_t on entry and
// h_t = f(a_t) on exit, or h_{t-1} where the mask is false.
template <typename T>
void elman_fwd(i64 B, i64 H, i64 f, T* a, i64 sa, const T* h, i64 sh, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    T* ar = a + b * sa;
    const T* hr = h + b * sh;
    if (!keep(mask, sm, b)) {
      for (i64 j = 0; j < H; ++j) ar[j] = hr[j];
    } else if (f == 0) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) ar[j] = std::tanh(ar[j]);
    } else if (f == 1) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) ar[j] = ar[j] < T(0) ? T(0) : ar[j];  // NaN stays NaN
    } else if (f == 2) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) ar[j] = sigmoid<T>(ar[j]);
    }
  }
}

// Elman, backward: da <- δa_t = f'(a_t) ⊙ (gy + dh); fp null means f' = 1 (fp carries the mask).
template <typename T>
void elman_bwd(i64 B, i64 H, const T* gy, i64 sgy, const T* dh, i64 sdh, const T* fp, i64 sfp,
               T* da, i64 sda) {
  for (i64 b = 0; b < B; ++b) {
    const T* y = gy + b * sgy;
    const T* d = dh + b * sdh;
    T* o = da + b * sda;
    if (fp != nullptr) {
      const T* f = fp + b * sfp;
#pragma omp simd
      for (i64 j = 0; j < H; ++j) o[j] = (y[j] + d[j]) * f[j];
    } else {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) o[j] = y[j] + d[j];
    }
  }
}

// Minimal GRU, forward. A (B, 2H) holds [a_u, a_c] on entry and [u, c~] on exit;
// co <- c' = c + u (c~ - c), or c_{t-1} where the mask is false.
template <typename T>
void mingru_fwd(i64 B, i64 H, T* A, i64 sA, const T* c, i64 sc, T* co, i64 sco, const bool* mask,
                i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    T* a = A + b * sA;
    const T* cr = c + b * sc;
    T* out = co + b * sco;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T u = sigmoid<T>(a[j]);
      const T ct = std::tanh(a[H + j]);
      a[j] = u;
      a[H + j] = ct;
      out[j] = cr[j] + u * (ct - cr[j]);
    }
    if (!keep(mask, sm, b))
      for (i64 j = 0; j < H; ++j) out[j] = cr[j];
  }
}

// Minimal GRU, backward. In: dc = δc_t, gy (B, H), gates = [u, c~] (B, 2H), dA = the factors
// (B, 2H). Out: dA <- g ⊙ dA with g = m (gy + dc), carry <- g ⊙ (1 - u), or dc where the mask
// is false (δc_{t-1} = carry + dA W_hh).
template <typename T>
void mingru_bwd(i64 B, i64 H, const T* dc, i64 sdc, const T* gy, i64 sgy, const T* gates,
                i64 sgt, T* dA, i64 sdA, T* carry, i64 sc, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    const T* d = dc + b * sdc;
    const T* y = gy + b * sgy;
    const T* u = gates + b * sgt;
    T* p = dA + b * sdA;
    T* c = carry + b * sc;
    if (keep(mask, sm, b)) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) {
        const T gj = d[j] + y[j];
        p[j] *= gj;
        p[H + j] *= gj;
        c[j] = gj - gj * u[j];
      }
    } else {
      for (i64 j = 0; j < H; ++j) {
        p[j] = p[H + j] = T(0);
        c[j] = d[j];
      }
    }
  }
}


// Layer norm of one row v (n) without gain: out <- (v - μ)/σ, returns 1/σ (σ² = biased
// variance + eps), as F.layer_norm; sums in double.
template <typename T>
inline T normalise(const T* v, T* out, i64 n, double eps) {
  double sum = 0, sq = 0;
  for (i64 j = 0; j < n; ++j) sum += v[j];
  const double mean = sum / n;
  for (i64 j = 0; j < n; ++j) sq += (v[j] - mean) * (v[j] - mean);
  const T r = T(1.0 / std::sqrt(sq / n + eps));
  const T mu = T(mean);
#pragma omp simd
  for (i64 j = 0; j < n; ++j) out[j] = (v[j] - mu) * r;
  return r;
}

// Backward of normalise given d = ∂L/∂v̂ (n): out <- (1/σ)(d - mean(d) - v̂ mean(d v̂)).
template <typename T>
inline void normalise_back(const T* d, const T* vhat, T r, T* out, i64 n) {
  double sd = 0, sdv = 0;
  for (i64 j = 0; j < n; ++j) {
    sd += d[j];
    sdv += d[j] * vhat[j];
  }
  const T md = T(sd / n), mdv = T(sdv / n);
#pragma omp simd
  for (i64 j = 0; j < n; ++j) out[j] = (d[j] - md - vhat[j] * mdv) * r;
}

// The LSTM's optional parameters and layer-norm buffers (null when the option is off): the
// peepholes w_ci, w_cf, w_co (H); the gate norm's raw product a = W_hh h (B, 4H), LN(a) (B, 4H),
// its 1/σ (B, 1) and gain γ_hh (4H); the cell norm's LN(c) (B, H), its 1/σ (B, 1), γ_c, β_c (H).
template <typename T>
struct LSTMOptions {
  const T *wci, *wcf, *wco;
  T* a;
  i64 sa;
  T* anorm;
  i64 san;
  T* arstd;
  i64 sar;
  const T* gamma_hh;
  T* cnorm;
  i64 scn;
  T* crstd;
  i64 scr;
  const T *gamma_c, *beta_c;
  double eps;
};

// LSTM, forward. z (B, 4H) holds xg + b_hh [+ W_hh h without the gate norm] on entry and
// [i, f, g, o] on exit; with the gate norm, a = W_hh h and z += LN(a) γ_hh first. Out:
// cn <- c', tc <- tanh(ĉ), hn <- h' = o tanh(ĉ); (h, c) where the mask is false.
// `peep` is a template parameter: as a run-time test inside the gate loop it made GCC vectorize
// that loop badly (4x slower without peepholes, measured).
template <typename T, bool peep>
void lstm_fwd(i64 B, i64 H, T* z, i64 sz, const T* c, i64 sc, const T* h, i64 sh, T* cn, i64 scn,
              T* hn, i64 shn, T* tc, i64 stc, const LSTMOptions<T>& o, const bool* mask, i64 sm) {
  for (i64 b = 0; b < B; ++b) {
    T* zr = z + b * sz;
    const T* cr = c + b * sc;
    const T* hr = h + b * sh;
    T* cnr = cn + b * scn;
    T* hnr = hn + b * shn;
    T* tcr = tc + b * stc;
    if (o.a != nullptr) {  // z += LN(a) γ_hh
      T* an = o.anorm + b * o.san;
      o.arstd[b * o.sar] = normalise<T>(o.a + b * o.sa, an, 4 * H, o.eps);
#pragma omp simd
      for (i64 j = 0; j < 4 * H; ++j) zr[j] += an[j] * o.gamma_hh[j];
    }
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T i = sigmoid<T>(zr[j] + (peep ? o.wci[j] * cr[j] : T(0)));
      const T f = sigmoid<T>(zr[H + j] + (peep ? o.wcf[j] * cr[j] : T(0)));
      const T g = std::tanh(zr[2 * H + j]);
      const T cv = f * cr[j] + i * g;
      zr[j] = i;
      zr[H + j] = f;
      zr[2 * H + j] = g;
      zr[3 * H + j] = sigmoid<T>(zr[3 * H + j] + (peep ? o.wco[j] * cv : T(0)));
      cnr[j] = cv;
    }
    if (o.cnorm != nullptr) {  // ĉ = LN(c') γ_c + β_c
      T* cc = o.cnorm + b * o.scn;
      o.crstd[b * o.scr] = normalise<T>(cnr, cc, H, o.eps);
#pragma omp simd
      for (i64 j = 0; j < H; ++j) tcr[j] = std::tanh(cc[j] * o.gamma_c[j] + o.beta_c[j]);
    } else {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) tcr[j] = std::tanh(cnr[j]);
    }
    if (keep(mask, sm, b)) {
#pragma omp simd
      for (i64 j = 0; j < H; ++j) hnr[j] = zr[3 * H + j] * tcr[j];
    } else {
      for (i64 j = 0; j < H; ++j) {
        hnr[j] = hr[j];
        cnr[j] = cr[j];
      }
    }
  }
}

// LSTM, the backward's factors over R rows at once (all T·B rows, contiguous): from gates
// [i, f, g, o] (R, 4H), c_prev = c_{t-1} (R, H) and tanh_c = tanh(ĉ) (R, H), D <- [g σ'(i),
// c_{t-1} σ'(f), i tanh'(g), tanh(ĉ) σ'(o)] (R, 4H) and Q <- o tanh'(ĉ) (R, H); with the cell
// norm's gain gamma_c (else null), Qg <- Q γ_c too. σ' = σ(1 - σ), tanh' = 1 - tanh².
template <typename T>
void lstm_factors(i64 R, i64 H, const T* gates, const T* c_prev, const T* tanh_c,
                  const T* gamma_c, T* D, T* Q, T* Qg) {
  for (i64 q = 0; q < R; ++q) {
    const T* z = gates + q * 4 * H;
    const T* cp = c_prev + q * H;
    const T* tc = tanh_c + q * H;
    T* d = D + q * 4 * H;
    T* qq = Q + q * H;
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T i = z[j], f = z[H + j], g = z[2 * H + j], o = z[3 * H + j], t = tc[j];
      d[j] = (T(1) - i) * i * g;
      d[H + j] = (T(1) - f) * f * cp[j];
      d[2 * H + j] = i - i * g * g;
      d[3 * H + j] = (T(1) - o) * o * t;
      qq[j] = o - o * t * t;
    }
    if (gamma_c != nullptr) {
      T* qg = Qg + q * H;
#pragma omp simd
      for (i64 j = 0; j < H; ++j) qg[j] = qq[j] * gamma_c[j];
    }
  }
}

// LSTM, backward. In: dh = δh_t, dy = ∂L_t/∂y_t, dc = δc_t (B, H), D (B, 4H) the factors of the
// kernel's backward [g σ'(i), c_{t-1} σ'(f), i tanh'(g), tanh(ĉ) σ'(o)], Q (B, H) the ∂ĉ factor
// o tanh'(ĉ) (times γ_c with the cell norm), gates (B, 4H) for f. Out: dH <- Δh = m (dy + dh),
// D <- ∂L/∂z, dc <- δc_{t-1}, da <- ∂L/∂a through the gate norm (when on), carry <- 0, or dh
// where the mask is false (so that δh_{t-1} = carry + ∂L/∂a W_hh).
template <typename T, bool peep>
void lstm_bwd(i64 B, i64 H, const T* dh, i64 sdh, const T* dy, i64 sdy, T* dc, i64 sdc, T* dH,
              i64 sdH, T* D, i64 sD, const T* Q, i64 sQ, const T* gates, i64 sgt, T* da, i64 sda,
              T* carry, i64 sca, const LSTMOptions<T>& o, const bool* mask, i64 sm) {
  T* tmp = new T[4 * H];
  for (i64 b = 0; b < B; ++b) {
    const T* dhr = dh + b * sdh;
    const T* dyr = dy + b * sdy;
    T* dcr = dc + b * sdc;
    T* dHr = dH + b * sdH;
    T* Dr = D + b * sD;
    const T* Qr = Q + b * sQ;
    const T* f = gates + b * sgt + H;
    T* car = carry + b * sca;
    if (!keep(mask, sm, b)) {  // the step's own gradients are zero; δh, δc pass unchanged
      for (i64 j = 0; j < H; ++j) {
        dHr[j] = T(0);
        car[j] = dhr[j];
      }
      for (i64 j = 0; j < 4 * H; ++j) Dr[j] = T(0);
      if (o.anorm != nullptr)
        for (i64 j = 0; j < 4 * H; ++j) da[b * sda + j] = T(0);
      continue;
    }
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T d = dhr[j] + dyr[j];
      dHr[j] = d;
      Dr[3 * H + j] *= d;   // ∂L/∂z_o
      tmp[j] = d * Qr[j];   // ∂L/∂ĉ (⊙ γ_c)
      car[j] = T(0);
    }
    if (o.cnorm != nullptr) normalise_back<T>(tmp, o.cnorm + b * o.scn, o.crstd[b * o.scr], tmp, H);
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T dcv = dcr[j] + tmp[j] + (peep ? Dr[3 * H + j] * o.wco[j] : T(0));  // ∂L/∂c
      Dr[j] *= dcv;
      Dr[H + j] *= dcv;
      Dr[2 * H + j] *= dcv;
      dcr[j] = dcv * f[j] + (peep ? Dr[j] * o.wci[j] + Dr[H + j] * o.wcf[j] : T(0));
    }
    if (o.anorm != nullptr) {  // ∂L/∂a = LN'(∂L/∂z γ_hh)
#pragma omp simd
      for (i64 j = 0; j < 4 * H; ++j) tmp[j] = Dr[j] * o.gamma_hh[j];
      normalise_back<T>(tmp, o.anorm + b * o.san, o.arstd[b * o.sar], da + b * sda, 4 * H);
    }
  }
  delete[] tmp;
}

// One token of a stacked LSTM's sampler, batch 1: x = E[token] (V, E); for each layer l,
// z = W_l [x; h_l] + b_l with W_l = [W_ih | W_hh] (4H, I_l + H) and b_l = b_ih + b_hh (4H),
// gates i, f, g, o, c_l <- f c_l + i g, h_l <- o tanh(c_l), x = h_l; logits = W_o h + b_o (V);
// p = softmax(logits / temperature) into probs (V); returns the index k with
// Σ_{j<k} p_j <= u < Σ_{j<=k} p_j (the last index if rounding leaves u past the total).
// h, c: (L, H); scratch: 4H + max(E, H) + H floats.
template <typename T>
i64 lstm_sample(i64 L, i64 H, i64 V, i64 E, const T* emb, const T* const* W, const T* const* bias,
                T* h, T* c, const T* Wo, const T* bo, double temperature, i64 token, double u,
                T* probs, T* scratch) {
  T* z = scratch;
  T* v = scratch + 4 * H;  // [x; h_l]
  i64 I = E;
  for (i64 j = 0; j < E; ++j) v[j] = emb[token * E + j];
  for (i64 l = 0; l < L; ++l) {
    T* hl = h + l * H;
    T* cl = c + l * H;
    for (i64 j = 0; j < H; ++j) v[I + j] = hl[j];
    const i64 K = I + H;
    const T* Wl = W[l];
    for (i64 r = 0; r < 4 * H; ++r) {
      const T* w = Wl + r * K;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (i64 k = 0; k < K; ++k) acc += w[k] * v[k];
      z[r] = acc + (bias[l] != nullptr ? bias[l][r] : T(0));
    }
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
      const T i = sigmoid<T>(z[j]), f = sigmoid<T>(z[H + j]);
      const T g = std::tanh(z[2 * H + j]), o = sigmoid<T>(z[3 * H + j]);
      const T cv = f * cl[j] + i * g;
      cl[j] = cv;
      hl[j] = o * std::tanh(cv);
    }
    for (i64 j = 0; j < H; ++j) v[j] = hl[j];
    I = H;
  }
  const T* top = h + (L - 1) * H;
  T mx = -INFINITY;
  for (i64 r = 0; r < V; ++r) {
    const T* w = Wo + r * H;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (i64 k = 0; k < H; ++k) acc += w[k] * top[k];
    probs[r] = (acc + (bo != nullptr ? bo[r] : T(0))) / T(temperature);
    mx = probs[r] > mx ? probs[r] : mx;
  }
  double total = 0;
  for (i64 r = 0; r < V; ++r) {
    probs[r] = std::exp(probs[r] - mx);
    total += probs[r];
  }
  double cum = 0;
  i64 pick = V - 1;
  const double target = u * total;
  for (i64 r = 0; r < V; ++r) {
    cum += probs[r];
    if (target < cum) {
      pick = r;
      break;
    }
  }
  const T inv = T(1.0 / total);
  for (i64 r = 0; r < V; ++r) probs[r] *= inv;
  return pick;
}

}  // namespace

// The C ABI: one symbol per function and dtype (f32: float, f64: double).
#define RNNKIT_EXPORT(T, S)                                                                     \
  extern "C" void gru_fwd_##S(i64 B, i64 H, T* P, i64 sP, const T* x, i64 sx, const T* h,       \
                              i64 sh, T* n, i64 sn, T* ho, i64 sho, const bool* m, i64 sm) {    \
    gru_fwd<T>(B, H, P, sP, x, sx, h, sh, n, sn, ho, sho, m, sm);                               \
  }                                                                                             \
  extern "C" void gru_bwd_##S(i64 B, i64 H, const T* dh, i64 sdh, const T* gy, i64 sgy,         \
                              const T* gt, i64 sgt, T* dP, i64 sdP, T* g, i64 sg, T* c, i64 sc, \
                              const bool* m, i64 sm) {                                          \
    gru_bwd<T>(B, H, dh, sdh, gy, sgy, gt, sgt, dP, sdP, g, sg, c, sc, m, sm);                  \
  }                                                                                             \
  extern "C" void gru_factors_##S(i64 R, i64 H, const T* gt, const T* n, const T* hp, T* dP,     \
                                  T* dn) {                                                      \
    gru_factors<T>(R, H, gt, n, hp, dP, dn);                                                    \
  }                                                                                             \
  extern "C" void grub_gates_##S(i64 B, i64 H, T* A, i64 sA, const T* x, i64 sx, const T* h,    \
                                 i64 sh, T* s, i64 ss) {                                        \
    grub_gates<T>(B, H, A, sA, x, sx, h, sh, s, ss);                                            \
  }                                                                                             \
  extern "C" void grub_state_##S(i64 B, i64 H, T* N, i64 sN, const T* x, i64 sx, const T* z,    \
                                 i64 sz, const T* h, i64 sh, T* ho, i64 sho, const bool* m,     \
                                 i64 sm) {                                                      \
    grub_state<T>(B, H, N, sN, x, sx, z, sz, h, sh, ho, sho, m, sm);                            \
  }                                                                                             \
  extern "C" void grub_factors_##S(i64 R, i64 H, const T* gt, const T* n, const T* hp, T* dA) { \
    grub_factors<T>(R, H, gt, n, hp, dA);                                                       \
  }                                                                                             \
  extern "C" void grub_bwd_a_##S(i64 B, i64 H, const T* dh, i64 sdh, const T* gy, i64 sgy,      \
                                 T* dA, i64 sdA, T* g, i64 sg, const bool* m, i64 sm) {         \
    grub_bwd_a<T>(B, H, dh, sdh, gy, sgy, dA, sdA, g, sg, m, sm);                               \
  }                                                                                             \
  extern "C" void grub_bwd_b_##S(i64 B, i64 H, const T* ds, i64 sds, const T* g, i64 sg,        \
                                 const T* gt, i64 sgt, const T* dh, i64 sdh, T* dA, i64 sdA,    \
                                 T* c, i64 sc, const bool* m, i64 sm) {                         \
    grub_bwd_b<T>(B, H, ds, sds, g, sg, gt, sgt, dh, sdh, dA, sdA, c, sc, m, sm);               \
  }                                                                                             \
  extern "C" void lstm_factors_##S(i64 R, i64 H, const T* gt, const T* cp, const T* tc,         \
                                   const T* gc, T* D, T* Q, T* Qg) {                            \
    lstm_factors<T>(R, H, gt, cp, tc, gc, D, Q, Qg);                                            \
  }                                                                                             \
  extern "C" void elman_fwd_##S(i64 B, i64 H, i64 f, T* a, i64 sa, const T* h, i64 sh,          \
                                const bool* m, i64 sm) {                                        \
    elman_fwd<T>(B, H, f, a, sa, h, sh, m, sm);                                                 \
  }                                                                                             \
  extern "C" void elman_bwd_##S(i64 B, i64 H, const T* gy, i64 sgy, const T* dh, i64 sdh,       \
                                const T* fp, i64 sfp, T* da, i64 sda) {                         \
    elman_bwd<T>(B, H, gy, sgy, dh, sdh, fp, sfp, da, sda);                                     \
  }                                                                                             \
  extern "C" void mingru_fwd_##S(i64 B, i64 H, T* A, i64 sA, const T* c, i64 sc, T* co,         \
                                 i64 sco, const bool* m, i64 sm) {                              \
    mingru_fwd<T>(B, H, A, sA, c, sc, co, sco, m, sm);                                          \
  }                                                                                             \
  extern "C" void mingru_bwd_##S(i64 B, i64 H, const T* dc, i64 sdc, const T* gy, i64 sgy,      \
                                 const T* gt, i64 sgt, T* dA, i64 sdA, T* c, i64 sc,            \
                                 const bool* m, i64 sm) {                                       \
    mingru_bwd<T>(B, H, dc, sdc, gy, sgy, gt, sgt, dA, sdA, c, sc, m, sm);                      \
  }                                                                                             \
  extern "C" void lstm_fwd_##S(i64 B, i64 H, T* z, i64 sz, const T* c, i64 sc, const T* h,     \
                               i64 sh, T* cn, i64 scn, T* hn, i64 shn, T* tc, i64 stc,          \
                               const T* wci, const T* wcf, const T* wco, T* a, i64 sa, T* an,   \
                               i64 san, T* ar, i64 sar, const T* ghh, T* cc, i64 scc, T* cr,    \
                               i64 scr, const T* gc, const T* bc, double eps, const bool* m,    \
                               i64 sm) {                                                        \
    const LSTMOptions<T> o{wci, wcf, wco, a, sa, an, san, ar, sar, ghh, cc, scc, cr, scr, gc, bc, \
                           eps};                                                                \
    (wci ? lstm_fwd<T, true> : lstm_fwd<T, false>)(B, H, z, sz, c, sc, h, sh, cn, scn, hn, shn, \
                                                  tc, stc, o, m, sm);                           \
  }                                                                                             \
  extern "C" void lstm_bwd_##S(i64 B, i64 H, const T* dh, i64 sdh, const T* dy, i64 sdy, T* dc, \
                               i64 sdc, T* dH, i64 sdH, T* D, i64 sD, const T* Q, i64 sQ,       \
                               const T* gt, i64 sgt, T* da, i64 sda, T* ca, i64 sca,            \
                               const T* wci, const T* wcf, const T* wco, T* an, i64 san, T* ar, \
                               i64 sar, const T* ghh, T* cc, i64 scc, T* cr, i64 scr,           \
                               const bool* m, i64 sm) {                                         \
    const LSTMOptions<T> o{wci,     wcf, wco, nullptr, 0,  an,      san,     ar, sar,           \
                           ghh,     cc,  scc, cr,      scr, nullptr, nullptr, 0.0};             \
    (wci ? lstm_bwd<T, true> : lstm_bwd<T, false>)(B, H, dh, sdh, dy, sdy, dc, sdc, dH, sdH, D,  \
                                                  sD, Q, sQ, gt, sgt, da, sda, ca, sca, o, m, sm); \
  }

extern "C" i64 lstm_sample_f32(i64 L, i64 H, i64 V, i64 E, const float* emb,
                               const float* const* W, const float* const* b, float* h, float* c,
                               const float* Wo, const float* bo, double temperature, i64 token,
                               double u, float* probs, float* scratch) {
  return lstm_sample<float>(L, H, V, E, emb, W, b, h, c, Wo, bo, temperature, token, u, probs,
                            scratch);
}

RNNKIT_EXPORT(float, f32)
RNNKIT_EXPORT(double, f64)
