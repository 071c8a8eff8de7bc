// Candidate (b) of benchmarks/compiled_step_candidates.py: the GRU and Elman steps as a torch
// C++ extension (torch.utils.cpp_extension, pybind11, at::Tensor arguments). Not shipped: the
// package uses the plain C++ of src/rnnkit/kernels/fused/fused_step.cpp through ctypes.

#include <torch/extension.h>

#include <cmath>

namespace {

using at::Tensor;
using c10::optional;

Tensor rows(const Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

void check_out(const Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.stride(1) == 1, name, " must be 2-D with unit column stride");
}

// The mask of row b, or true when there is none.
struct Mask {
  const bool* data = nullptr;
  int64_t stride = 0;
  explicit Mask(const optional<Tensor>& m) {
    if (m.has_value() && m->defined()) {
      TORCH_CHECK(m->scalar_type() == at::kBool, "mask must be bool");
      data = m->data_ptr<bool>();
      stride = m->stride(0);
    }
  }
  bool operator[](int64_t b) const { return data == nullptr || data[b * stride]; }
};

template <typename T>
inline T sigmoid(T a) {
  return T(1) / (T(1) + std::exp(-a));
}

// ---------------------------------------------------------------- GRU, reset_after=True
// In: P = W_hh h + b_hh (B, 3H), x = xg_t (B, 3H), h = h_{t-1} (B, H). Out: P <- [r, z, p_n],
// n_out <- n, h_out <- h' = n + z (h - n) (h_{t-1} where the mask is false).
template <typename T>
void gru_forward_impl(Tensor& P, const Tensor& x, const Tensor& h, Tensor& n_out, Tensor& h_out,
                      const Mask& m) {
  const int64_t B = h.size(0), H = h.size(1);
  for (int64_t b = 0; b < B; ++b) {
    T* p = P.data_ptr<T>() + b * P.stride(0);
    const T* xr = x.data_ptr<T>() + b * x.stride(0);
    const T* hr = h.data_ptr<T>() + b * h.stride(0);
    T* nr = n_out.data_ptr<T>() + b * n_out.stride(0);
    T* ho = h_out.data_ptr<T>() + b * h_out.stride(0);
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T r = sigmoid<T>(p[j] + xr[j]);
      const T z = sigmoid<T>(p[H + j] + xr[H + j]);
      const T n = std::tanh(xr[2 * H + j] + r * p[2 * H + j]);
      p[j] = r;
      p[H + j] = z;
      nr[j] = n;
      ho[j] = n + z * (hr[j] - n);
    }
    if (!m[b])
      for (int64_t j = 0; j < H; ++j) ho[j] = hr[j];
  }
}

void gru_forward_step(Tensor P, Tensor x, Tensor h, Tensor n_out, Tensor h_out,
                      optional<Tensor> mask) {
  check_out(P, "P");
  check_out(n_out, "n_out");
  check_out(h_out, "h_out");
  x = rows(x);
  h = rows(h);
  Mask m(mask);
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "gru_forward_step",
                             [&] { gru_forward_impl<scalar_t>(P, x, h, n_out, h_out, m); });
}

// In: dh = δh_t (B, H), gy = ∂L_t/∂h_t (B, H), gates = [r, z, p_n] (B, 3H), dP = the factors
// [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂p_n] (B, 3H). Out: g_out <- g = m (gy + dh), dP <- g ⊙ dP,
// carry <- g ⊙ z (dh where the mask is false): δh_{t-1} = carry + dP W_hh follows.
template <typename T>
void gru_backward_impl(const Tensor& dh, const Tensor& gy, const Tensor& gates, Tensor& dP,
                       Tensor& g_out, Tensor& carry, const Mask& m) {
  const int64_t B = dh.size(0), H = dh.size(1);
  for (int64_t b = 0; b < B; ++b) {
    const T* d = dh.data_ptr<T>() + b * dh.stride(0);
    const T* y = gy.data_ptr<T>() + b * gy.stride(0);
    const T* z = gates.data_ptr<T>() + b * gates.stride(0) + H;
    T* p = dP.data_ptr<T>() + b * dP.stride(0);
    T* go = g_out.data_ptr<T>() + b * g_out.stride(0);
    T* c = carry.data_ptr<T>() + b * carry.stride(0);
    if (m[b]) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T g = d[j] + y[j];
        go[j] = g;
        p[j] *= g;
        p[H + j] *= g;
        p[2 * H + j] *= g;
        c[j] = g * z[j];
      }
    } else {
      for (int64_t j = 0; j < H; ++j) {
        go[j] = T(0);
        p[j] = p[H + j] = p[2 * H + j] = T(0);
        c[j] = d[j];
      }
    }
  }
}

void gru_backward_step(Tensor dh, Tensor gy, Tensor gates, Tensor dP, Tensor g_out, Tensor carry,
                       optional<Tensor> mask) {
  check_out(dP, "dP");
  check_out(g_out, "g_out");
  check_out(carry, "carry");
  dh = rows(dh);
  gy = rows(gy);
  gates = rows(gates);
  Mask m(mask);
  AT_DISPATCH_FLOATING_TYPES(dP.scalar_type(), "gru_backward_step", [&] {
    gru_backward_impl<scalar_t>(dh, gy, gates, dP, g_out, carry, m);
  });
}

// ---------------------------------------------------------------- Elman
// f by code: 0 tanh, 1 relu, 2 sigmoid, 3 identity.
// In/out: a (B, H) holds a_t on entry and h_t = f(a_t) on exit (h_{t-1} where the mask is false).
template <typename T>
void elman_forward_impl(Tensor& a, const Tensor& h, int64_t f, const Mask& m) {
  const int64_t B = a.size(0), H = a.size(1);
  for (int64_t b = 0; b < B; ++b) {
    T* ar = a.data_ptr<T>() + b * a.stride(0);
    const T* hr = h.data_ptr<T>() + b * h.stride(0);
    if (!m[b]) {
      for (int64_t j = 0; j < H; ++j) ar[j] = hr[j];
      continue;
    }
    if (f == 0) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ar[j] = std::tanh(ar[j]);
    } else if (f == 1) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ar[j] = ar[j] > T(0) ? ar[j] : T(0);
    } else if (f == 2) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ar[j] = sigmoid<T>(ar[j]);
    }
  }
}

void elman_forward_step(Tensor a, Tensor h, int64_t f, optional<Tensor> mask) {
  check_out(a, "a");
  TORCH_CHECK(f >= 0 && f <= 3, "nonlinearity code must be 0..3");
  h = rows(h);
  Mask m(mask);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "elman_forward_step",
                             [&] { elman_forward_impl<scalar_t>(a, h, f, m); });
}

// Out: da <- δa_t = f'(a_t) ⊙ (gy + dh) (fprime None: f' = 1; it carries the mask already).
template <typename T>
void elman_backward_impl(const Tensor& gy, const Tensor& dh, const Tensor* fp, Tensor& da) {
  const int64_t B = da.size(0), H = da.size(1);
  for (int64_t b = 0; b < B; ++b) {
    const T* y = gy.data_ptr<T>() + b * gy.stride(0);
    const T* d = dh.data_ptr<T>() + b * dh.stride(0);
    T* o = da.data_ptr<T>() + b * da.stride(0);
    if (fp != nullptr) {
      const T* f = fp->data_ptr<T>() + b * fp->stride(0);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) o[j] = (y[j] + d[j]) * f[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) o[j] = y[j] + d[j];
    }
  }
}

void elman_backward_step(Tensor gy, Tensor dh, optional<Tensor> fprime, Tensor da) {
  check_out(da, "da");
  gy = rows(gy);
  dh = rows(dh);
  Tensor fp;
  if (fprime.has_value() && fprime->defined()) fp = rows(*fprime);
  AT_DISPATCH_FLOATING_TYPES(da.scalar_type(), "elman_backward_step", [&] {
    elman_backward_impl<scalar_t>(gy, dh, fp.defined() ? &fp : nullptr, da);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.def("gru_forward_step", &gru_forward_step);
  mod.def("gru_backward_step", &gru_backward_step);
  mod.def("elman_forward_step", &elman_forward_step);
  mod.def("elman_backward_step", &elman_backward_step);
}
