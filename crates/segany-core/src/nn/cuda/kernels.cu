// segany's CUDA kernels: the row-wise passes candle composes from several strided kernels.
// Every kernel reads and writes T (float, __half or __nv_bfloat16) and computes in float.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// y = act(x + bias[col]) + residual, elementwise over rows x cols (bias, residual nullable).
// act: 0 identity, 1 exact GELU (erf), 2 ReLU. I: the index type, 32-bit where n allows (the
// column's remainder in 64 bits costs more than the pass's memory traffic).
template <typename T, typename I>
__device__ void bias_act_n(const T* x, const T* bias, const T* residual, T* y, I n, int cols, int act) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        float v = to_f(x[i]);
        if (bias) v += to_f(bias[i % cols]);
        if (act == 1) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (act == 2) v = fmaxf(v, 0.0f);
        if (residual) v += to_f(residual[i]);
        y[i] = from_f<T>(v);
    }
}

template <typename T>
__device__ void bias_act(const T* x, const T* bias, const T* residual, T* y, int64_t n, int cols, int act) {
    if (n <= 0x7fffffff - (int64_t)gridDim.x * blockDim.x)
        bias_act_n<T, unsigned int>(x, bias, residual, y, (unsigned int)n, cols, act);
    else
        bias_act_n<T, int64_t>(x, bias, residual, y, n, cols, act);
}

// LayerNorm over rows of `cols` values, one warp per row: the mean, then the mean of squared
// deviations (two passes, as torch), then the affine map.
template <typename T>
__device__ void layer_norm(const T* x, const T* w, const T* b, T* y, int rows, int cols, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T* xr = x + (int64_t)row * cols;
    T* yr = y + (int64_t)row * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += to_f(xr[c]);
    float mean = warp_sum(s) / cols;
    float q = 0.0f;
    for (int c = lane; c < cols; c += 32) { float d = to_f(xr[c]) - mean; q += d * d; }
    float inv = rsqrtf(warp_sum(q) / cols + eps);
    for (int c = lane; c < cols; c += 32)
        yr[c] = from_f<T>((to_f(xr[c]) - mean) * inv * to_f(w[c]) + to_f(b[c]));
}

// Softmax over rows of `cols` values, one warp per row: an online pass for the maximum and
// the sum of exponentials, then the writes.
template <typename T>
__device__ void softmax_rows(const T* x, T* y, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T* xr = x + (int64_t)row * cols;
    T* yr = y + (int64_t)row * cols;
    float m = -INFINITY, s = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float v = to_f(xr[c]);
        if (v == -INFINITY) continue;
        if (v > m) { s = s * expf(m - v) + 1.0f; m = v; }
        else s += expf(v - m);
    }
    float gm = warp_max(m);
    s = (m == -INFINITY) ? 0.0f : s * expf(m - gm);
    float inv = 1.0f / warp_sum(s);
    for (int c = lane; c < cols; c += 32) yr[c] = from_f<T>(expf(to_f(xr[c]) - gm) * inv);
}


// Softmax of one long row (cols <= 256 * SOFTMAX_PER_THREAD) per block of 256 threads: the
// row is read once into registers, the maximum and the sum reduced across the block, and the
// probabilities written.
#define SOFTMAX_PER_THREAD 16
__device__ __forceinline__ float block_reduce(float v, bool is_max, float* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : (is_max ? -INFINITY : 0.0f);
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();
    return v;
}

template <typename T>
__device__ void softmax_long_rows(const T* x, T* y, int cols) {
    __shared__ float shared[32];
    const T* xr = x + (int64_t)blockIdx.x * cols;
    T* yr = y + (int64_t)blockIdx.x * cols;
    float v[SOFTMAX_PER_THREAD];
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < SOFTMAX_PER_THREAD; j++) {
        int c = threadIdx.x + j * blockDim.x;
        v[j] = c < cols ? to_f(xr[c]) : -INFINITY;
        m = fmaxf(m, v[j]);
    }
    m = block_reduce(m, true, shared);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < SOFTMAX_PER_THREAD; j++) {
        v[j] = (v[j] == -INFINITY) ? 0.0f : expf(v[j] - m);
        s += v[j];
    }
    float inv = 1.0f / block_reduce(s, false, shared);
#pragma unroll
    for (int j = 0; j < SOFTMAX_PER_THREAD; j++) {
        int c = threadIdx.x + j * blockDim.x;
        if (c < cols) yr[c] = from_f<T>(v[j] * inv);
    }
}

// q, k, v heads from a (B, N, 3, H, D) projection: out[(which, b, h, n, d)], three
// (B*H, N, D) blocks one after another.
template <typename T>
__device__ void qkv_heads(const T* qkv, T* out, int b, int n, int heads, int d) {
    int64_t per = (int64_t)b * heads * n * d;
    int64_t total = 3 * per;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t which = i / per, r = i % per;
        int dd = r % d; r /= d;
        int nn = r % n; r /= n;
        int hh = r % heads; int64_t bb = r / heads;
        out[i] = qkv[(((bb * n + nn) * 3 + which) * heads + hh) * d + dd];
    }
}


// The encoder's windows: (B, H, W, C) tokens into (B·nh·nw, wh·ww, C) windows of wh × ww
// tokens, zero where a window reaches past the grid. One block per window token.
template <typename T>
__device__ void window_partition(const T* x, T* out, int h, int w, int c, int wh, int ww, int nh, int nw) {
    int row = blockIdx.x;
    int win = row / (wh * ww), p = row % (wh * ww);
    int b = win / (nh * nw), g = win % (nh * nw);
    int y = (g / nw) * wh + p / ww, xx = (g % nw) * ww + p % ww;
    T* dst = out + (int64_t)row * c;
    if (y < h && xx < w) {
        const T* src = x + (((int64_t)b * h + y) * w + xx) * c;
        for (int i = threadIdx.x; i < c; i += blockDim.x) dst[i] = src[i];
    } else {
        for (int i = threadIdx.x; i < c; i += blockDim.x) dst[i] = from_f<T>(0.0f);
    }
}

// The attention's output heads (B·nh·nw·heads, wh·ww, d) back to (B, H, W, heads·d) tokens,
// the windows' padding dropped (global attention: one window of the whole grid). One block per
// output token.
template <typename T>
__device__ void merge_heads(const T* o, T* out, int h, int w, int heads, int d, int wh, int ww, int nh, int nw) {
    int row = blockIdx.x;
    int b = row / (h * w), yx = row % (h * w);
    int y = yx / w, xx = yx % w;
    int win = (b * nh + y / wh) * nw + xx / ww;
    int p = (y % wh) * ww + xx % ww;
    int n = wh * ww, c = heads * d;
    T* dst = out + (int64_t)row * c;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        int hh = i / d, dd = i % d;
        dst[i] = o[(((int64_t)win * heads + hh) * n + p) * d + dd];
    }
}

// The attention's operands with decomposed relative positions, from a (B', N, 3, heads, d)
// projection of B' windows of wh × ww tokens (N = wh·ww), into three blocks one after another:
//   qa (B'·heads, N, d + wh + ww) = [q·scale, q·rh[i, a], q·rw[j, b]] for token (i, j),
//   ka (B'·heads, N, d + wh + ww) = [k, one at a = i, one at wh + b = j],
//   v  (B'·heads, N, d),
// so that qa·kaᵀ = q·kᵀ·scale + rel_h + rel_w (SAM's add_decomposed_rel_pos) in one product.
// tables: rh (wh, wh, d) then rw (ww, ww, d), from get_rel_pos.

// rel_pos_copy writes all but qa's terms, one block per token.
template <typename T>
__device__ void rel_pos_copy(const T* qkv, T* out, int bw, int heads, int d, int wh, int ww,
                             float scale) {
    int n = wh * ww, row = blockIdx.x;
    int bb = row / n, tok = row % n, ti = tok / ww, tj = tok % ww;
    int c = heads * d, width = d + wh + ww, terms = wh + ww;
    int64_t per_head = (int64_t)n * width;
    T* qa = out + (int64_t)bb * heads * per_head + (int64_t)tok * width;
    T* ka = qa + (int64_t)bw * heads * per_head;
    T* v = out + 2 * (int64_t)bw * heads * per_head + ((int64_t)bb * heads * n + tok) * d;
    const T* src = qkv + (int64_t)row * 3 * c;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        int hh = i / d, dd = i - hh * d;
        qa[hh * per_head + dd] = from_f<T>(to_f(src[i]) * scale);
        ka[hh * per_head + dd] = src[c + i];
        v[(int64_t)hh * n * d + dd] = src[2 * c + i];
    }
    for (int i = threadIdx.x; i < heads * terms; i += blockDim.x) {
        int hh = i / terms, t = i - hh * terms;
        ka[hh * per_head + d + t] = from_f<T>((t == ti || t == wh + tj) ? 1.0f : 0.0f);
    }
}

// qa's terms along one axis (blockIdx.y: 0 rows, 1 columns): the block takes one line L of a
// window (blockIdx.x = window · max(wh, ww) + L; grid row i = L for rel_h, grid column j = L
// for rel_w) and a range of its (head, token) query rows (blockIdx.z); its table (rh[L] or
// rw[L], kt × d) sits in shared memory as float, read by all threads at once, and each thread
// sums one query row (q unscaled, from the projection) against the table's rows in registers,
// TERMS_TILE at a time.
#define TERMS_TILE 16
template <typename T>
__device__ void rel_pos_terms(const T* qkv, const T* tables, T* out, int heads, int d, int wh,
                              int ww) {
    extern __shared__ float tab[];
    int axis = blockIdx.y;
    int lines = axis == 0 ? wh : ww, len = axis == 0 ? ww : wh, kt = axis == 0 ? wh : ww;
    int maxl = wh > ww ? wh : ww;
    int bb = blockIdx.x / maxl, line = blockIdx.x % maxl;
    if (line >= lines) return;
    const T* table = tables + (axis == 0 ? 0 : (int64_t)wh * wh * d) + (int64_t)line * kt * d;
    for (int i = threadIdx.x; i < kt * d; i += blockDim.x) tab[i] = to_f(table[i]);
    __syncthreads();
    int n = wh * ww, c = heads * d, width = d + wh + ww, off = d + (axis == 0 ? 0 : wh);
    int rows = heads * len;
    int r = blockIdx.z * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    int hh = r / len, m = r - hh * len;
    int tok = axis == 0 ? line * ww + m : m * ww + line;
    const T* q = qkv + ((int64_t)bb * n + tok) * 3 * c + hh * d;
    T* dst = out + (((int64_t)bb * heads + hh) * n + tok) * width + off;
    for (int t0 = 0; t0 < kt; t0 += TERMS_TILE) {
        float acc[TERMS_TILE];
#pragma unroll
        for (int u = 0; u < TERMS_TILE; u++) acc[u] = 0.0f;
        for (int k = 0; k < d; k++) {
            float qv = to_f(q[k]);
#pragma unroll
            for (int u = 0; u < TERMS_TILE; u++)
                if (t0 + u < kt) acc[u] += qv * tab[(t0 + u) * d + k];
        }
#pragma unroll
        for (int u = 0; u < TERMS_TILE; u++)
            if (t0 + u < kt) dst[t0 + u] = from_f<T>(acc[u]);
    }
}

#define INSTANTIATE(T, SUFFIX)                                                                    \
extern "C" __global__ void bias_act_##SUFFIX(const T* x, const T* bias, const T* residual, T* y,   \
                                             int64_t n, int cols, int act) {                      \
    bias_act<T>(x, bias, residual, y, n, cols, act);                                              \
}                                                                                                 \
extern "C" __global__ void layer_norm_##SUFFIX(const T* x, const T* w, const T* b, T* y, int rows, \
                                               int cols, float eps) {                             \
    layer_norm<T>(x, w, b, y, rows, cols, eps);                                                   \
}                                                                                                 \
extern "C" __global__ void softmax_rows_##SUFFIX(const T* x, T* y, int rows, int cols) {          \
    softmax_rows<T>(x, y, rows, cols);                                                            \
}                                                                                                 \
extern "C" __global__ void softmax_long_rows_##SUFFIX(const T* x, T* y, int cols) {               \
    softmax_long_rows<T>(x, y, cols);                                                             \
}                                                                                                 \
extern "C" __global__ void qkv_heads_##SUFFIX(const T* qkv, T* out, int b, int n, int heads,      \
                                              int d) {                                            \
    qkv_heads<T>(qkv, out, b, n, heads, d);                                                       \
}                                                                                                 \
extern "C" __global__ void window_partition_##SUFFIX(const T* x, T* out, int h, int w, int c,     \
                                                     int wh, int ww, int nh, int nw) {            \
    window_partition<T>(x, out, h, w, c, wh, ww, nh, nw);                                         \
}                                                                                                 \
extern "C" __global__ void merge_heads_##SUFFIX(const T* o, T* out, int h, int w, int heads,      \
                                                int d, int wh, int ww, int nh, int nw) {          \
    merge_heads<T>(o, out, h, w, heads, d, wh, ww, nh, nw);                                       \
}                                                                                                 \
extern "C" __global__ void rel_pos_copy_##SUFFIX(const T* qkv, T* out, int bw, int heads, int d, \
                                                 int wh, int ww, float scale) {                   \
    rel_pos_copy<T>(qkv, out, bw, heads, d, wh, ww, scale);                                       \
}                                                                                                 \
extern "C" __global__ void rel_pos_terms_##SUFFIX(const T* qkv, const T* tables, T* out,         \
                                                  int heads, int d, int wh, int ww) {             \
    rel_pos_terms<T>(qkv, tables, out, heads, d, wh, ww);                                         \
}

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
