#include "gst-plugins/core/kernels/decode_attention.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <ATen/ATen.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ATTN_HAVE_X86 1
#define ATTN_AVX2 __attribute__((target("avx2,fma")))
#define ATTN_AVX512 __attribute__((target("avx512f,fma")))
#endif

namespace chatterbox::kernels {

namespace {

// What LibTorch computes: the reference for the generic path.
at::Tensor attention_torch(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t T,
                           double score_scale) {
  const int64_t B = q.size(0), nh = q.size(1), d = q.size(2), nkv = k_cache.size(1);
  at::Tensor K = k_cache.narrow(2, 0, T), V = v_cache.narrow(2, 0, T);
  if (nkv != nh) {
    const int64_t g = nh / nkv;
    K = K.unsqueeze(2).expand({B, nkv, g, T, d}).reshape({B, nh, T, d});
    V = V.unsqueeze(2).expand({B, nkv, g, T, d}).reshape({B, nh, T, d});
  }
  at::Tensor scores = at::matmul(q.unsqueeze(2), K.transpose(-1, -2)).mul_(score_scale);  // [B, nh, 1, T]
  return at::matmul(at::softmax(scores, -1), V).squeeze(2);
}

#ifdef ATTN_HAVE_X86
// scores[t] = scale * q . K[t] for one head (d a multiple of 8 / 16 on the
// SIMD bodies; the tail of d in scalar).
ATTN_AVX512 void scores_avx512(const float* q, const float* K, int64_t T, int64_t d, float scale, float* s) {
  const int64_t d16 = d & ~int64_t(15);
  for (int64_t t = 0; t < T; ++t) {
    const float* k = K + t * d;
    __m512 a = _mm512_setzero_ps();
    for (int64_t i = 0; i < d16; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(k + i), a);
    float acc = _mm512_reduce_add_ps(a);
    for (int64_t i = d16; i < d; ++i) acc += q[i] * k[i];
    s[t] = acc * scale;
  }
}
ATTN_AVX512 void weighted_avx512(const float* p, const float* V, int64_t T, int64_t d, float* o) {
  int64_t i = 0;
  for (; i + 64 <= d; i += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < T; ++t) {
      const __m512 w = _mm512_set1_ps(p[t]);
      const float* v = V + t * d + i;
      a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v), a0);
      a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 16), a1);
      a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 32), a2);
      a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 48), a3);
    }
    _mm512_storeu_ps(o + i, a0);
    _mm512_storeu_ps(o + i + 16, a1);
    _mm512_storeu_ps(o + i + 32, a2);
    _mm512_storeu_ps(o + i + 48, a3);
  }
  for (; i + 16 <= d; i += 16) {
    __m512 a = _mm512_setzero_ps();
    for (int64_t t = 0; t < T; ++t) a = _mm512_fmadd_ps(_mm512_set1_ps(p[t]), _mm512_loadu_ps(V + t * d + i), a);
    _mm512_storeu_ps(o + i, a);
  }
  for (; i < d; ++i) {
    float a = 0.f;
    for (int64_t t = 0; t < T; ++t) a += p[t] * V[t * d + i];
    o[i] = a;
  }
}

ATTN_AVX2 float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
ATTN_AVX2 void scores_avx2(const float* q, const float* K, int64_t T, int64_t d, float scale, float* s) {
  const int64_t d8 = d & ~int64_t(7);
  for (int64_t t = 0; t < T; ++t) {
    const float* k = K + t * d;
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < d8; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a);
    float acc = hsum8(a);
    for (int64_t i = d8; i < d; ++i) acc += q[i] * k[i];
    s[t] = acc * scale;
  }
}
ATTN_AVX2 void weighted_avx2(const float* p, const float* V, int64_t T, int64_t d, float* o) {
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < T; ++t) {
      const __m256 w = _mm256_set1_ps(p[t]);
      const float* v = V + t * d + i;
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
      a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
      a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
    }
    _mm256_storeu_ps(o + i, a0);
    _mm256_storeu_ps(o + i + 8, a1);
    _mm256_storeu_ps(o + i + 16, a2);
    _mm256_storeu_ps(o + i + 24, a3);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t t = 0; t < T; ++t) a = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), _mm256_loadu_ps(V + t * d + i), a);
    _mm256_storeu_ps(o + i, a);
  }
  for (; i < d; ++i) {
    float a = 0.f;
    for (int64_t t = 0; t < T; ++t) a += p[t] * V[t * d + i];
    o[i] = a;
  }
}
#endif

at::Tensor attention_simd(CpuPath path, const at::Tensor& q_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                          int64_t T, double score_scale) {
  const int64_t B = q_in.size(0), nh = q_in.size(1), d = q_in.size(2), nkv = k_cache.size(1), cap = k_cache.size(2);
  const int64_t g = nh / nkv;
  at::Tensor q = q_in.contiguous();
  at::Tensor scores = at::empty({B * nh, T}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k_cache.data_ptr<float>();
  const float* vp = v_cache.data_ptr<float>();
  float* sp = scores.data_ptr<float>();
  const float scale = static_cast<float>(score_scale);
  // Heads are independent: the pool splits them when the work is worth a wake-up.
  const int parts = B * nh * T * d >= (int64_t{1} << 17) ? compute_threads() : 1;
  // Unit u = b * nh + h reads kv head b * nkv + h / g.
  auto cache_offset = [&](int64_t u) { return ((u / nh) * nkv + (u % nh) / g) * cap * d; };
  run_parallel(parts, B * nh, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
#ifdef ATTN_HAVE_X86
      if (path >= CpuPath::Avx512)
        scores_avx512(qp + u * d, kp + cache_offset(u), T, d, scale, sp + u * T);
      else
        scores_avx2(qp + u * d, kp + cache_offset(u), T, d, scale, sp + u * T);
#endif
    }
  });
  at::Tensor probs = at::softmax(scores, -1);
  at::Tensor o = at::empty({B, nh, d}, q.options());
  const float* pp = probs.data_ptr<float>();
  float* op = o.data_ptr<float>();
  run_parallel(parts, B * nh, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
#ifdef ATTN_HAVE_X86
      if (path >= CpuPath::Avx512)
        weighted_avx512(pp + u * T, vp + cache_offset(u), T, d, op + u * d);
      else
        weighted_avx2(pp + u * T, vp + cache_offset(u), T, d, op + u * d);
#endif
    }
  });
  return o;
}

bool simd_applies(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache) {
  auto ok = [](const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat; };
  return ok(q) && ok(k_cache) && ok(v_cache) && k_cache.is_contiguous() && v_cache.is_contiguous();
}

void check_shapes(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t T) {
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes(),
              "decode_attention: q [B, nh, d], caches [B, nkv, cap, d]");
  TORCH_CHECK(q.size(0) == k_cache.size(0) && q.size(2) == k_cache.size(3) && q.size(1) % k_cache.size(1) == 0,
              "decode_attention: q and cache shapes disagree");
  TORCH_CHECK(T >= 1 && T <= k_cache.size(2), "decode_attention: T out of the cache");
}

}  // namespace

at::Tensor decode_attention_on(CpuPath path, const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                               int64_t T, double score_scale) {
  TORCH_CHECK(static_cast<int>(path) <= static_cast<int>(detected_cpu_path()), "decode_attention_on: path ",
              cpu_path_name(path), " is not available on this CPU");
  check_shapes(q, k_cache, v_cache, T);
  if (path == CpuPath::Generic || !simd_applies(q, k_cache, v_cache))
    return attention_torch(q, k_cache, v_cache, T, score_scale);
  return attention_simd(path, q, k_cache, v_cache, T, score_scale);
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t T,
                            double score_scale) {
  return decode_attention_on(cpu_path(), q, k_cache, v_cache, T, score_scale);
}

}  // namespace chatterbox::kernels
