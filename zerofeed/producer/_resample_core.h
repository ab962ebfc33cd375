/*
 * Pillow's antialiased bilinear resize, bit for bit: the arithmetic shared by the _resample and
 * _jpegwindow extensions (each includes this file; everything here is static).
 *
 * Image.resize(size, BILINEAR, box=...) on an RGB(X) image: the same coefficients (computed in
 * double from a float box, rounded to 22-bit fixed point), the same two passes (horizontal over
 * the rows the vertical pass needs, rounded to uint8, then vertical) and the same rounding, so
 * the pixels equal Pillow's (the Python side tests this on many boxes). What differs is the
 * work around it: no intermediate Pillow images, SIMD passes, and the result lands as packed RGB
 * in the caller's buffer, optionally mirrored, with no further copy.
 *
 * A `resampler` takes the source one row at a time (resampler_feed), so a decoder can hand each
 * row over as it is decoded, and the source image never has to exist as a whole.
 * `widest` picks the widest instructions the passes may use: 0 plain C, 1 SSE4.1 (horizontal
 * pass), 2 AVX2 (both passes); each is used only where the CPU has it; lower values are for tests.
 */
#ifndef ZEROFEED_RESAMPLE_CORE_H
#define ZEROFEED_RESAMPLE_CORE_H

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAVE_SSE41_PATH 1
#include <immintrin.h>
#else
#define HAVE_SSE41_PATH 0
#endif

static inline uint8_t clip8(int32_t value) {
    int32_t shifted = value >> PRECISION_BITS;
    return shifted < 0 ? 0 : shifted > 255 ? 255 : (uint8_t)shifted;
}

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

typedef struct {
    int ksize;
    int *bounds;  /* per output: first input index, number of taps */
    int32_t *kk;  /* per output: ksize fixed-point weights */
} coeffs;

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter. */
static int make_coeffs(int in_size, float in0, float in1, int out_size, coeffs *c) {
    double scale = (double)(in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size > INT_MAX / (ksize * (int)sizeof(double))) return -1;
    double *weights = malloc(sizeof(double) * (size_t)ksize);
    c->kk = calloc((size_t)out_size * ksize, sizeof(int32_t));
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->ksize = ksize;
    if (!weights || !c->kk || !c->bounds) {
        free(weights);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            weights[x] = bilinear((x + xmin - center + 0.5) * ss);
            ww += weights[x];
        }
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? weights[x] / ww : weights[x];
            c->kk[xx * ksize + x] =
                w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                      : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(weights);
    return 0;
}

static void free_coeffs(coeffs *c) {
    free(c->bounds);
    free(c->kk);
}

/* One row of the horizontal pass (RGBX in, RGBX out), in plain C. */
static void row_plain(const uint8_t *line, const coeffs *c, int out_w, uint8_t *dst) {
    for (int xx = 0; xx < out_w; xx++) {
        const int32_t *k = c->kk + xx * c->ksize;
        const uint8_t *p = line + (size_t)c->bounds[xx * 2] * 4;
        int32_t acc[4] = {HALF, HALF, HALF, HALF};
        for (int x = 0; x < c->bounds[xx * 2 + 1]; x++)
            for (int ch = 0; ch < 4; ch++) acc[ch] += (int32_t)p[x * 4 + ch] * k[x];
        for (int ch = 0; ch < 4; ch++) dst[xx * 4 + ch] = clip8(acc[ch]);
    }
}

/* Coefficients laid out for row_avx2, which multiplies 16-bit pixels by 16-bit weights
 * (vpmaddwd: twice the products per instruction of a 32-bit multiply). A 22-bit weight k does
 * not fit 16 bits, so it is split exactly: k = hi * 2048 + lo, with lo = k & 2047, and the pass
 * sums p * hi and p * lo apart, then adds (sum_hi << 11) + sum_lo: the same integer as Pillow's
 * sum of p * k. Every output has the same number of taps, a multiple of four (zero weights pad
 * the short ones, which changes no sum), starting within the row. Per output and group of four
 * taps, 32 weights: hi then lo, each 16 int16 in the order the pixels are shuffled into (taps
 * 0 and 1 interleaved per channel in the lower 128 bits, taps 2 and 3 in the upper). */
typedef struct {
    int taps;
    int *start;   /* per output: the first input pixel its taps read */
    int16_t *w;   /* per output: taps / 4 groups of 32 weights, 32-byte aligned */
} padded_coeffs;

#define PADDED_GROUP 32 /* int16 weights per group of four taps: 16 hi, 16 lo */

static void free_padded(padded_coeffs *p) {
    free(p->start);
    free(p->w);
}

/* 0, or -1 when the row is narrower than the taps or a weight does not split into two int16
 * (never for the bilinear filter's 0..2^22) or out of memory (then the caller takes another
 * path). */
static int pad_coeffs(const coeffs *c, int in_size, int out_size, padded_coeffs *p) {
    int most = 1;
    for (int xx = 0; xx < out_size; xx++)
        if (c->bounds[xx * 2 + 1] > most) most = c->bounds[xx * 2 + 1];
    p->taps = (most + 3) & ~3;
    if (p->taps > in_size) return -1;
    size_t weights = (size_t)out_size * (size_t)(p->taps / 4) * PADDED_GROUP;
    p->start = malloc(sizeof(int) * (size_t)out_size);
    p->w = aligned_alloc(32, sizeof(int16_t) * weights); /* a multiple of 32 bytes */
    if (!p->start || !p->w) return -1;
    memset(p->w, 0, sizeof(int16_t) * weights);
    for (int xx = 0; xx < out_size; xx++) {
        int first = c->bounds[xx * 2], count = c->bounds[xx * 2 + 1];
        int start = first + p->taps > in_size ? in_size - p->taps : first;
        int16_t *w = p->w + (size_t)xx * (size_t)(p->taps / 4) * PADDED_GROUP;
        for (int x = 0; x < count; x++) {
            int32_t k = c->kk[xx * c->ksize + x];
            if (k < -(1 << 26) || k >= (1 << 26)) return -1;
            int tap = first - start + x, group = tap / 4, half = (tap % 4) / 2, odd = tap % 2;
            for (int ch = 0; ch < 4; ch++) {
                int16_t *at = w + group * PADDED_GROUP + half * 8 + ch * 2 + odd;
                at[0] = (int16_t)(k >> 11);
                at[16] = (int16_t)(k & 2047);
            }
        }
        p->start[xx] = start;
    }
    return 0;
}

#if HAVE_SSE41_PATH
/* acc + the four channels of the pixel at p times weight k. */
__attribute__((target("sse4.1"))) static inline __m128i add_tap(__m128i acc, const uint8_t *p,
                                                                int32_t k) {
    int32_t pixel;
    memcpy(&pixel, p, 4);
    __m128i wide = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(pixel));
    return _mm_add_epi32(acc, _mm_mullo_epi32(wide, _mm_set1_epi32(k)));
}

/* >> 22, then saturate to 0..255 through int16 (the same as clip8), stored as one RGBX pixel. */
__attribute__((target("sse4.1"))) static inline void store_pixel(__m128i acc, uint8_t *dst) {
    __m128i shifted = _mm_srai_epi32(acc, PRECISION_BITS);
    __m128i packed = _mm_packus_epi16(_mm_packs_epi32(shifted, shifted), shifted);
    int32_t result = _mm_cvtsi128_si32(packed);
    memcpy(dst, &result, 4);
}

/* One row of the horizontal pass, the four channels of a tap in one SSE4.1 register. */
__attribute__((target("sse4.1"))) static void row_sse41(const uint8_t *line, const coeffs *c,
                                                        int out_w, uint8_t *dst) {
    for (int xx = 0; xx < out_w; xx++) {
        const int32_t *k = c->kk + xx * c->ksize;
        const uint8_t *p = line + (size_t)c->bounds[xx * 2] * 4;
        __m128i acc = _mm_set1_epi32(HALF);
        for (int x = 0; x < c->bounds[xx * 2 + 1]; x++) acc = add_tap(acc, p + x * 4, k[x]);
        store_pixel(acc, dst + xx * 4);
    }
}

/* The four channel sums of one output of the horizontal pass, not yet rounded: per group of
 * four taps, the 16 pixel bytes go to both 128-bit halves, one shuffle widens them to int16
 * with taps 0/1 (lower half) and 2/3 (upper half) interleaved per channel, and two vpmaddwd
 * add p * hi and p * lo. The result's halves still have to be added together. */
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline
AVX2_INLINE __m256i padded_sum(const uint8_t *p, const int16_t *w, int taps) {
    const __m256i interleave =
        _mm256_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1, 8, -1, 12, -1, 9,
                         -1, 13, -1, 10, -1, 14, -1, 11, -1, 15, -1);
    __m256i hi = _mm256_setzero_si256(), lo = hi;
    for (int group = 0; group < taps / 4; group++) {
        __m128i pixels = _mm_loadu_si128((const __m128i *)(p + group * 16));
        __m256i words = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(pixels), interleave);
        const int16_t *weights = w + group * PADDED_GROUP;
        hi = _mm256_add_epi32(
            hi, _mm256_madd_epi16(words, _mm256_load_si256((const __m256i *)weights)));
        lo = _mm256_add_epi32(
            lo, _mm256_madd_epi16(words, _mm256_load_si256((const __m256i *)(weights + 16))));
    }
    return _mm256_add_epi32(_mm256_slli_epi32(hi, 11), lo);
}

/* One row of the horizontal pass with padded coefficients, two outputs at a time: their halves
 * added in one register, rounded, >> 22, saturated together and stored as 8 bytes. Inlined
 * with a constant `taps`, the tap loop unrolls. */
AVX2_INLINE void padded_row(const uint8_t *line, const padded_coeffs *c, int out_w, uint8_t *dst,
                            int taps) {
    const size_t stride = (size_t)(taps / 4) * PADDED_GROUP;
    const __m256i half = _mm256_set1_epi32(HALF);
    int xx = 0;
    for (; xx + 2 <= out_w; xx += 2) {
        __m256i a = padded_sum(line + (size_t)c->start[xx] * 4, c->w + xx * stride, taps);
        __m256i b = padded_sum(line + (size_t)c->start[xx + 1] * 4, c->w + (xx + 1) * stride,
                               taps);
        __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                                        _mm256_permute2x128_si256(a, b, 0x31));
        sums = _mm256_srai_epi32(_mm256_add_epi32(sums, half), PRECISION_BITS);
        __m128i words =
            _mm_packs_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
        _mm_storel_epi64((__m128i *)(dst + xx * 4), _mm_packus_epi16(words, words));
    }
    if (xx < out_w) {
        __m256i a = padded_sum(line + (size_t)c->start[xx] * 4, c->w + xx * stride, taps);
        __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        sum = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(HALF)), PRECISION_BITS);
        __m128i words = _mm_packs_epi32(sum, sum);
        int32_t pixel = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
        memcpy(dst + xx * 4, &pixel, 4);
    }
}

__attribute__((target("avx2"))) static void row_avx2(const uint8_t *line, const padded_coeffs *c,
                                                     int out_w, uint8_t *dst) {
    switch (c->taps) { /* the common tap counts, for shrinking by up to about 3.5x */
    case 4: padded_row(line, c, out_w, dst, 4); break;
    case 8: padded_row(line, c, out_w, dst, 8); break;
    default: padded_row(line, c, out_w, dst, c->taps);
    }
}

/* Vertical pass, four pixels at a time in registers: taps, >> 22, saturate, RGBX -> RGB (in
 * reverse pixel order when mirrored) and a 12-byte store; the last w % 4 pixels in plain C. */
__attribute__((target("avx2"))) static void vertical_avx2(const uint8_t *tmp, int w,
                                                          const coeffs *c, int out_h,
                                                          int row_offset, uint8_t *out,
                                                          int hflip, int vflip) {
    const size_t n = (size_t)w * 4;
    const __m128i to_rgb = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    const __m128i to_rgb_mirrored =
        _mm_setr_epi8(12, 13, 14, 8, 9, 10, 4, 5, 6, 0, 1, 2, -1, -1, -1, -1);
    const __m128i order = hflip ? to_rgb_mirrored : to_rgb;
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = c->kk + yy * c->ksize;
        const uint8_t *first = tmp + (size_t)(c->bounds[yy * 2] - row_offset) * n;
        int taps = c->bounds[yy * 2 + 1], xx = 0;
        uint8_t *dst = out + (size_t)(vflip ? out_h - 1 - yy : yy) * w * 3;
        for (; xx + 4 <= w; xx += 4) {
            __m256i low = _mm256_set1_epi32(HALF), high = low;
            for (int y = 0; y < taps; y++) {
                __m128i bytes = _mm_loadu_si128((const __m128i *)(first + y * n + xx * 4));
                __m256i weight = _mm256_set1_epi32(k[y]);
                low = _mm256_add_epi32(low, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), weight));
                high = _mm256_add_epi32(
                    high, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)), weight));
            }
            low = _mm256_srai_epi32(low, PRECISION_BITS);
            high = _mm256_srai_epi32(high, PRECISION_BITS);
            __m128i rgbx = _mm_packus_epi16(
                _mm_packs_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1)),
                _mm_packs_epi32(_mm256_castsi256_si128(high), _mm256_extracti128_si256(high, 1)));
            __m128i rgb = _mm_shuffle_epi8(rgbx, order);
            uint8_t *px = dst + (size_t)(hflip ? w - 4 - xx : xx) * 3;
            _mm_storel_epi64((__m128i *)px, rgb);
            int32_t last = _mm_extract_epi32(rgb, 2);
            memcpy(px + 8, &last, 4);
        }
        for (; xx < w; xx++) {
            int32_t acc[4] = {HALF, HALF, HALF, HALF};
            for (int y = 0; y < taps; y++)
                for (int ch = 0; ch < 4; ch++) acc[ch] += (int32_t)first[y * n + xx * 4 + ch] * k[y];
            uint8_t *px = dst + (size_t)(hflip ? w - 1 - xx : xx) * 3;
            for (int ch = 0; ch < 3; ch++) px[ch] = clip8(acc[ch]);
        }
    }
}
#endif


/* Whether the AVX2 passes may run: allowed by `widest` and present in this CPU. */
static int use_avx2(int widest) {
#if HAVE_SSE41_PATH
    return widest >= 2 && __builtin_cpu_supports("avx2");
#else
    (void)widest;
    return 0;
#endif
}

/* Vertical pass in plain C (for CPUs without AVX2): tmp (RGBX, width w) into out (RGB),
 * mirrored as asked. */
static void vertical(const uint8_t *tmp, int w, const coeffs *c, int out_h, int row_offset,
                     uint8_t *out, int hflip, int vflip, int32_t *acc) {
    const int n = w * 4;
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = c->kk + yy * c->ksize;
        int ymin = c->bounds[yy * 2] - row_offset, taps = c->bounds[yy * 2 + 1];
        for (int i = 0; i < n; i++) acc[i] = HALF;
        for (int y = 0; y < taps; y++) {
            const uint8_t *line = tmp + (size_t)(ymin + y) * n;
            const int32_t ky = k[y];
            for (int i = 0; i < n; i++) acc[i] += (int32_t)line[i] * ky;
        }
        uint8_t *dst = out + (size_t)(vflip ? out_h - 1 - yy : yy) * w * 3;
        for (int xx = 0; xx < w; xx++) {
            uint8_t *px = dst + (size_t)(hflip ? w - 1 - xx : xx) * 3;
            px[0] = clip8(acc[xx * 4]);
            px[1] = clip8(acc[xx * 4 + 1]);
            px[2] = clip8(acc[xx * 4 + 2]);
        }
    }
}

/* Copy rows of RGBX into packed RGB (the passes Pillow would skip, when the box is the image). */
static void pack_rows(const uint8_t *src, int w, int out_h, uint8_t *out, int hflip, int vflip) {
    for (int yy = 0; yy < out_h; yy++) {
        const uint8_t *line = src + (size_t)yy * w * 4;
        uint8_t *dst = out + (size_t)(vflip ? out_h - 1 - yy : yy) * w * 3;
        for (int xx = 0; xx < w; xx++) {
            uint8_t *px = dst + (size_t)(hflip ? w - 1 - xx : xx) * 3;
            memcpy(px, line + (size_t)xx * 4, 3);
        }
    }
}

typedef void (*row_pass)(const uint8_t *, const coeffs *, int, uint8_t *);

/* A resize of the `box` of a src_w x src_h RGBX image to out_w x out_h, fed row by row. */
typedef struct {
    int widest, src_w, out_w, out_h, need_h, need_v;
    int first, last;   /* the source rows the output reads: feed exactly these */
    coeffs cv, ch;     /* vertical and horizontal coefficients */
    padded_coeffs padded;
    int padded_ok;     /* the horizontal pass is row_avx2 over `padded` */
    row_pass row;      /* else this one over `ch` */
    uint8_t *rows;     /* the fed rows, after the horizontal pass: (last - first) x rows_w RGBX */
    int rows_w;
    int32_t *acc;      /* the plain vertical pass's accumulators */
} resampler;

static void resampler_free(resampler *r) {
    free_coeffs(&r->cv);
    free_coeffs(&r->ch);
    free_padded(&r->padded);
    free(r->rows);
    free(r->acc);
}

/* 0, or -1 when out of memory (then resampler_free). `box` must lie within the image. */
static int resampler_init(resampler *r, int widest, int src_w, int src_h, const float box[4],
                          int out_w, int out_h) {
    memset(r, 0, sizeof(*r));
    r->widest = widest;
    r->src_w = src_w;
    r->out_w = out_w;
    r->out_h = out_h;
    r->need_h = out_w != src_w || box[0] != 0.0f || box[2] != (float)out_w;
    r->need_v = out_h != src_h || box[1] != 0.0f || box[3] != (float)out_h;
    if (make_coeffs(src_h, box[1], box[3], out_h, &r->cv)) return -1;
    r->first = r->cv.bounds[0];
    r->last = r->cv.bounds[out_h * 2 - 2] + r->cv.bounds[out_h * 2 - 1];
    r->rows_w = r->need_h ? out_w : src_w;
    if (r->need_h) {
        if (make_coeffs(src_w, box[0], box[2], out_w, &r->ch)) return -1;
        r->row = row_plain;
#if HAVE_SSE41_PATH
        r->padded_ok = use_avx2(widest) && pad_coeffs(&r->ch, src_w, out_w, &r->padded) == 0;
        if (!r->padded_ok && widest >= 1 && __builtin_cpu_supports("sse4.1")) r->row = row_sse41;
#endif
    }
    r->rows = malloc((size_t)(r->last - r->first) * r->rows_w * 4);
    if (!r->rows) return -1;
    if (r->need_v && !use_avx2(widest)) {
        r->acc = malloc(sizeof(int32_t) * (size_t)r->rows_w * 4);
        if (!r->acc) return -1;
    }
    return 0;
}

/* Source row y (first <= y < last), src_w RGBX pixels. */
static void resampler_feed(resampler *r, int y, const uint8_t *line) {
    uint8_t *dst = r->rows + (size_t)(y - r->first) * r->rows_w * 4;
    if (!r->need_h) {
        memcpy(dst, line, (size_t)r->src_w * 4);
        return;
    }
#if HAVE_SSE41_PATH
    if (r->padded_ok) {
        row_avx2(line, &r->padded, r->out_w, dst);
        return;
    }
#endif
    r->row(line, &r->ch, r->out_w, dst);
}

/* The vertical pass over the fed rows into out (out_h x out_w x 3), mirrored as asked. */
static void resampler_finish(resampler *r, uint8_t *out, int hflip, int vflip) {
    if (!r->need_v) {
        pack_rows(r->rows, r->rows_w, r->out_h, out, hflip, vflip);
#if HAVE_SSE41_PATH
    } else if (use_avx2(r->widest)) {
        vertical_avx2(r->rows, r->rows_w, &r->cv, r->out_h, r->first, out, hflip, vflip);
#endif
    } else {
        vertical(r->rows, r->rows_w, &r->cv, r->out_h, r->first, out, hflip, vflip, r->acc);
    }
}

/* For the Python bindings (which include Python.h first): 1 when a resize of the `box` of a
 * src_w x src_h image into `out` (out_h x out_w x 3 bytes) can go ahead, else 0 with the
 * exception set. */
static int resize_args_ok(int src_w, int src_h, const float box[4], const Py_buffer *out,
                          int out_w, int out_h) {
    if (src_w < 1 || src_h < 1 || out_w < 1 || out_h < 1) {
        PyErr_SetString(PyExc_ValueError, "sizes must be positive");
    } else if (!PyBuffer_IsContiguous(out, 'C') ||
               (size_t)out->len != (size_t)out_w * out_h * 3) {
        PyErr_Format(PyExc_TypeError, "out must be C-contiguous RGB of %zu bytes, got %zd",
                     (size_t)out_w * out_h * 3, out->len);
    } else if (!(box[0] >= 0 && box[1] >= 0 && box[2] <= src_w && box[3] <= src_h &&
                 box[2] > box[0] && box[3] > box[1])) {
        char text[160]; /* PyErr_Format has no %f */
        snprintf(text, sizeof(text), "box (%g, %g, %g, %g) is not inside the %dx%d image",
                 box[0], box[1], box[2], box[3], src_w, src_h);
        PyErr_SetString(PyExc_ValueError, text);
    } else {
        return 1;
    }
    return 0;
}

#endif
