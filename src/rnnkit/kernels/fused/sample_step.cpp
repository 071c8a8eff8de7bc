// One token of a language model's batch-1 sampler in one call: embedding, a stack of plain LSTM
// or GRU (reset_after) layers, the linear head, and the choice of the next token (greedy, or
// temperature, top-k, top-p and a draw). The Python side is rnnkit/kernels/fused/lm_sampler.py,
// which packs the weights once and fills the Model struct below.
//
// Per layer l, with x the layer's input and h, c its state:
//   gi = W_ih x + b_ih  (layer 0 with a table: gi = T[token], T = E W_ih^T + b_ih, made once)
//   gh = W_hh h + b_hh
//   LSTM: i, f, g, o = σ, σ, tanh, σ of (gi + gh) in four blocks of H; c <- f c + i g;
//         h <- o tanh(c)
//   GRU:  r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n); h <- (1 - z) n + z h
// logits = W_o h_top + b_o. The choice, as rnnkit.decoding.choose does it: greedy: the first
// argmax of the logits; else z = logits / τ (in float64 shifted by the maximum if that
// overflows), top-k keeps the k largest (ties: the lower id), top-p keeps the smallest set of
// the most probable (softmax in float64, ranked stably) whose mass ahead has not reached
// p - 1e-6, p = softmax(z) in float32, and the token is argmax_k p_k / q_k with q_k ~ Exp(1)
// given by the caller: torch.multinomial's own draw (so the same q gives the same token).
//
// Weights are packed in panels of 64 rows: a (R, K) matrix becomes (ceil(R / 64), K, 64), rows
// past R zero, so that the matrix-vector product reads one contiguous stream and keeps eight
// independent 16-wide accumulators (memory bandwidth, not the add latency, bounds it). The
// packed weights may be bfloat16 (Model.bf16: half the bytes a token reads), widened to float32
// as they are read; everything else is float32.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using i64 = std::int64_t;
typedef float v16 __attribute__((vector_size(64)));

inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// 16 bfloat16 weights (the high halves of float32s) as float32: the bits shifted up.
inline v16 load(const std::uint16_t* p) {
  typedef std::uint16_t u16x16 __attribute__((vector_size(32)));
  typedef std::uint32_t u32x16 __attribute__((vector_size(64)));
  u16x16 s;
  std::memcpy(&s, p, sizeof s);
  const u32x16 w = __builtin_convertvector(s, u32x16) << 16;
  v16 v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

inline float sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }

// Rows [64 p0, 64 p1) of y (R rounded up to 64) = P v + b (b may be null; its R entries), P
// packed as above, its weights float32 or bfloat16 (W), the sums in float32. Each row's sum is
// taken in the same order whatever the range, so splitting the panels between threads gives the
// same floats.
template <typename W>
void matvec_panels(i64 R, i64 K, const W* P, const float* v, const float* b, float* y, i64 p0,
                   i64 p1) {
  for (i64 p = p0; p < p1; ++p) {
    const W* w = P + p * K * 64;
    v16 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
    i64 k = 0;
    for (; k + 1 < K; k += 2, w += 128) {
      const float x0 = v[k], x1 = v[k + 1];
      a0 += load(w) * x0;
      a1 += load(w + 16) * x0;
      a2 += load(w + 32) * x0;
      a3 += load(w + 48) * x0;
      b0 += load(w + 64) * x1;
      b1 += load(w + 80) * x1;
      b2 += load(w + 96) * x1;
      b3 += load(w + 112) * x1;
    }
    if (k < K) {
      const float x0 = v[k];
      a0 += load(w) * x0;
      a1 += load(w + 16) * x0;
      a2 += load(w + 32) * x0;
      a3 += load(w + 48) * x0;
    }
    float* out = y + p * 64;
    store(out, a0 + b0);
    store(out + 16, a1 + b1);
    store(out + 32, a2 + b2);
    store(out + 48, a3 + b3);
  }
  if (b != nullptr)
    for (i64 r = p0 * 64; r < std::min(R, p1 * 64); ++r) y[r] += b[r];
}


}  // namespace

// The model and its buffers; lm_sampler.py's _Model mirrors this field by field.
struct Model {
  i64 L, H, cell, V, E;  // cell: 0 LSTM, 1 GRU
  const float* table;    // (V_in, G H) or null: layer 0's gi per token
  const float* emb;      // (V_in, E): used when table is null
  const void* const* W_ih;  // per layer, packed (G H, I_l); float32, or bfloat16 if bf16
  const void* const* W_hh;  // per layer, packed (G H, H); the same
  const float* const* b_ih;  // per layer (G H) or null
  const float* const* b_hh;
  const void* W_o;  // packed (V, H); the same
  const float* b_o;  // (V) or null
  float* h;          // (L, H)
  float* c;          // (L, H), LSTM only
  float* gi;         // G H rounded up to 64
  float* gh;
  float* logits;  // V rounded up to 64
  float* probs;   // V: the distribution the token was drawn from (greedy: untouched)
  double* work;   // V
  i64* order;     // V
  i64 greedy, top_k;  // top_k 0: off
  double temperature, top_p;  // top_p >= 1: off
  i64 bf16;  // the packed weights are bfloat16 (else float32)
};

namespace {

// Rows [64 p0, 64 p1) of y = P v + b with the model's packed weights P (float32 or bfloat16).
void mv(const Model& m, i64 R, i64 K, const void* P, const float* v, const float* b, float* y,
        i64 p0, i64 p1) {
  if (m.bf16)
    matvec_panels(R, K, static_cast<const std::uint16_t*>(P), v, b, y, p0, p1);
  else
    matvec_panels(R, K, static_cast<const float*>(P), v, b, y, p0, p1);
}

// All of y's panels.
void mv(const Model& m, i64 R, i64 K, const void* P, const float* v, const float* b, float* y) {
  mv(m, R, K, P, v, b, y, 0, (R + 63) / 64);
}

// Layer l's new state for units [u0, u1) from its gate sums gi, gh.
void update(const Model& m, i64 l, i64 u0, i64 u1) {
  const i64 H = m.H;
  const float *gi = m.gi, *gh = m.gh;
  float* h = m.h + l * H;
  if (m.cell == 0) {
    float* c = m.c + l * H;
#pragma omp simd
    for (i64 j = u0; j < u1; ++j) {
      const float i = sigmoid(gi[j] + gh[j]), f = sigmoid(gi[H + j] + gh[H + j]);
      const float g = std::tanh(gi[2 * H + j] + gh[2 * H + j]);
      const float o = sigmoid(gi[3 * H + j] + gh[3 * H + j]);
      c[j] = f * c[j] + i * g;
      h[j] = o * std::tanh(c[j]);
    }
  } else {
#pragma omp simd
    for (i64 j = u0; j < u1; ++j) {
      const float r = sigmoid(gi[j] + gh[j]), z = sigmoid(gi[H + j] + gh[H + j]);
      const float n = std::tanh(gi[2 * H + j] + r * gh[2 * H + j]);
      h[j] = (1.0f - z) * n + z * h[j];
    }
  }
}

void layers(const Model& m, i64 token) {
  const i64 H = m.H, G = m.cell == 0 ? 4 : 3;
  const float* x = m.emb + token * m.E;
  i64 I = m.E;
  for (i64 l = 0; l < m.L; ++l) {
    float* h = m.h + l * H;
    if (l == 0 && m.table != nullptr)
      std::memcpy(m.gi, m.table + token * G * H, sizeof(float) * G * H);
    else
      mv(m, G * H, I, m.W_ih[l], x, m.b_ih[l], m.gi);
    mv(m, G * H, H, m.W_hh[l], h, m.b_hh[l], m.gh);
    update(m, l, 0, H);
    x = h;
    I = H;
  }
}

// The order of the kept tokens by value, descending, ties by id (a stable sort's order).
void rank(const double* value, i64* order, i64 n, i64 V) {
  for (i64 k = 0; k < V; ++k) order[k] = k;
  auto before = [value](i64 a, i64 b) { return value[a] > value[b] || (value[a] == value[b] && a < b); };
  if (n < V)
    std::partial_sort(order, order + n, order + V, before);
  else
    std::sort(order, order + V, before);
}

i64 choose(const Model& m, const float* q) {
  const i64 V = m.V;
  float* z = m.logits;
  if (m.greedy) {
    i64 best = 0;
    for (i64 k = 1; k < V; ++k)
      if (z[k] > z[best]) best = k;
    return best;
  }
  const float tau = float(m.temperature);
  bool overflow = false;
  float top = -INFINITY;
  for (i64 k = 0; k < V; ++k) {
    top = std::max(top, z[k]);
    const float s = z[k] / tau;
    overflow |= std::isinf(s) && std::isfinite(z[k]);
    m.work[k] = s;
  }
  if (m.temperature < 1 && overflow)
    for (i64 k = 0; k < V; ++k) m.work[k] = float((double(z[k]) - double(top)) / m.temperature);
  for (i64 k = 0; k < V; ++k) z[k] = float(m.work[k]);  // z / τ, as float32
  if (m.top_k > 0 && m.top_k < V) {
    for (i64 k = 0; k < V; ++k) m.work[k] = z[k];
    rank(m.work, m.order, m.top_k, V);
    for (i64 k = m.top_k; k < V; ++k) z[m.order[k]] = -INFINITY;
  }
  if (m.top_p < 1) {
    double mx = -INFINITY, total = 0;
    for (i64 k = 0; k < V; ++k) mx = std::max(mx, double(z[k]));
    for (i64 k = 0; k < V; ++k) total += m.work[k] = std::exp(double(z[k]) - mx);
    for (i64 k = 0; k < V; ++k) m.work[k] /= total;
    rank(m.work, m.order, V, V);
    double ahead = 0;
    for (i64 k = 0; k < V; ++k) {
      const i64 t = m.order[k];
      if (k > 0 && ahead >= m.top_p - 1e-6) z[t] = -INFINITY;
      ahead += m.work[t];
    }
  }
  float mx = -INFINITY, total = 0;
  for (i64 k = 0; k < V; ++k) mx = std::max(mx, z[k]);
  for (i64 k = 0; k < V; ++k) total += m.probs[k] = std::exp(z[k] - mx);
  i64 best = 0;
  float best_ratio = -1;
  for (i64 k = 0; k < V; ++k) {
    m.probs[k] /= total;
    const float ratio = m.probs[k] / q[k];
    if (ratio > best_ratio) best = k, best_ratio = ratio;
  }
  return best;
}

}  // namespace

// Feed token through the layers; if emit, compute the logits and return the next token (q: V
// draws of Exp(1), unused when greedy), else return -1.
extern "C" i64 lm_sample_step_f32(const Model* m, i64 token, i64 emit, const float* q) {
  layers(*m, token);
  if (!emit) return -1;
  mv(*m, m->V, m->H, m->W_o, m->h + (m->L - 1) * m->H, m->b_o, m->logits);
  return choose(*m, q);
}

// ---------------------------------------------------------------------------------------------
// The same token step on a team of n threads (the caller and n - 1 workers), for machines where
// one core cannot read the weights as fast as several can (each core has its own path to the
// shared cache). Thread t owns the hidden units of its share of the 64-unit blocks (H a multiple
// of 64) in every layer: it computes their rows of every gate's products (whole panels, as the
// packing has them) and their new state, and its share of the head's panels. Per layer, one
// barrier after the products (everyone has read h(t-1) before anyone writes h(t)) and one after
// the update (h(t) is whole for the next layer); one after the head; then the caller chooses.
// Every float is computed as the one-thread step computes it, so the tokens are the same.

namespace {

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A reusable barrier for n threads that spin (waits inside a token are microseconds long), and
// yield the core now and then, should a thread of the team be waiting for one.
struct Barrier {
  alignas(64) std::atomic<i64> count{0};
  alignas(64) std::atomic<i64> generation{0};
  i64 n = 1;
  void wait() {
    const i64 gen = generation.load(std::memory_order_acquire);
    if (count.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
      count.store(0, std::memory_order_relaxed);
      generation.store(gen + 1, std::memory_order_release);
    } else {
      for (i64 spins = 1; generation.load(std::memory_order_acquire) == gen; ++spins) {
        pause();
        if (spins % 4096 == 0) std::this_thread::yield();
      }
    }
  }
};

struct Team {
  const Model* m = nullptr;
  i64 n = 1;
  Barrier barrier;
  alignas(64) std::atomic<i64> posted{0};  // tokens posted so far
  i64 token = 0, emit = 0;                 // the posted token (written before posted)
  std::atomic<bool> stop{false};
  std::mutex mu;  // a worker idle for SLEEP_AFTER sleeps on cv (the consumer may be slow)
  std::condition_variable cv;
  i64 sleepers = 0;
  std::vector<std::thread> workers;
};

constexpr auto SLEEP_AFTER = std::chrono::milliseconds(2);

// Thread t's share [lo, hi) of n items split into n_threads near-equal parts.
inline void share(i64 items, i64 t, i64 n_threads, i64* lo, i64* hi) {
  *lo = items * t / n_threads;
  *hi = items * (t + 1) / n_threads;
}

void token_part(Team& team, i64 t, i64 token, i64 emit) {
  const Model& m = *team.m;
  const i64 H = m.H, G = m.cell == 0 ? 4 : 3;
  i64 b0, b1;
  share(H / 64, t, team.n, &b0, &b1);
  const i64 u0 = 64 * b0, u1 = 64 * b1;
  const float* x = m.emb + token * m.E;
  i64 I = m.E;
  for (i64 l = 0; l < m.L; ++l) {
    float* h = m.h + l * H;
    for (i64 g = 0; g < G; ++g) {
      const i64 r0 = g * H + u0, p0 = r0 / 64, p1 = (g * H + u1) / 64;
      if (l == 0 && m.table != nullptr)
        std::memcpy(m.gi + r0, m.table + token * G * H + r0, sizeof(float) * (u1 - u0));
      else
        mv(m, G * H, I, m.W_ih[l], x, m.b_ih[l], m.gi, p0, p1);
      mv(m, G * H, H, m.W_hh[l], h, m.b_hh[l], m.gh, p0, p1);
    }
    team.barrier.wait();
    update(m, l, u0, u1);
    team.barrier.wait();
    x = h;
    I = H;
  }
  if (!emit) return;
  i64 p0, p1;
  share((m.V + 63) / 64, t, team.n, &p0, &p1);
  mv(m, m.V, H, m.W_o, m.h + (m.L - 1) * H, m.b_o, m.logits, p0, p1);
  team.barrier.wait();
}

void work(Team* team, i64 t) {
  i64 seen = 0;
  for (;;) {
    i64 posted;
    auto idle = std::chrono::steady_clock::now();
    for (i64 spins = 1;; ++spins) {
      posted = team->posted.load(std::memory_order_acquire);
      if (posted != seen || team->stop.load(std::memory_order_acquire)) break;
      pause();
      if (spins % 1024 == 0 && std::chrono::steady_clock::now() - idle > SLEEP_AFTER) {
        std::unique_lock<std::mutex> lock(team->mu);
        ++team->sleepers;
        team->cv.wait(lock, [&] { return team->posted.load() != seen || team->stop.load(); });
        --team->sleepers;
        idle = std::chrono::steady_clock::now();
      }
    }
    if (posted == seen) return;  // stopped, nothing posted
    seen = posted;
    token_part(*team, t, team->token, team->emit);
  }
}

}  // namespace

// A team of n threads (this one and n - 1 workers, started here) for lm_sample_team_step over
// m; null if n < 2, H is not a multiple of 64, n exceeds H / 64, or a thread cannot start.
extern "C" void* lm_team_new(const Model* m, i64 n) {
  if (n < 2 || m->H % 64 != 0 || n > m->H / 64) return nullptr;
  Team* team = new Team;
  team->m = m;
  team->n = n;
  team->barrier.n = n;
  try {
    for (i64 t = 1; t < n; ++t) team->workers.emplace_back(work, team, t);
  } catch (...) {
    team->stop.store(true);
    { std::lock_guard<std::mutex> lock(team->mu); }
    team->cv.notify_all();
    for (auto& w : team->workers) w.join();
    delete team;
    return nullptr;
  }
  return team;
}

// Stop and join the workers; free the team.
extern "C" void lm_team_free(void* handle) {
  Team* team = static_cast<Team*>(handle);
  team->stop.store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(team->mu);
    team->cv.notify_all();
  }
  for (auto& w : team->workers) w.join();
  delete team;
}

// lm_sample_step_f32 on the team's model, the work shared by its threads: the same result.
extern "C" i64 lm_sample_team_step(void* handle, i64 token, i64 emit, const float* q) {
  Team& team = *static_cast<Team*>(handle);
  team.token = token;
  team.emit = emit;
  team.posted.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(team.mu);
    if (team.sleepers > 0) team.cv.notify_all();
  }
  token_part(team, 0, token, emit);
  if (!emit) return -1;
  return choose(*team.m, q);
}
