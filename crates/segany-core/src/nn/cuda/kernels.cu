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
// act: 0 identity, 1 exact GELU (erf), 2 ReLU.
template <typename T>
__device__ void bias_act(const T* x, const T* bias, const T* residual, T* y, int64_t n, int cols, int act) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = to_f(x[i]);
        if (bias) v += to_f(bias[i % cols]);
        if (act == 1) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (act == 2) v = fmaxf(v, 0.0f);
        if (residual) v += to_f(residual[i]);
        y[i] = from_f<T>(v);
    }
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
}

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
