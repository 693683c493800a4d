/* The pooled phi, T = conv2(relu(conv1(pooled))), k x k "same" convolutions on 2 -> h -> G
   maps, forward and backward; included by site.c once per floating type (real, NAME).

   oneDNN runs convolutions this narrow far below its speed on wide ones. Here each image
   plane is copied into a zero-bordered plane of width Wp = W + 2r, so that every kernel
   tap is one shift of the whole plane: out[o] += w * in[o + dy Wp + dx] over all
   o < H Wp at once, a long contiguous loop the compiler vectorises. The columns x >= W of
   such an output are not pixels: they are never read forward, and are zero in the
   gradients backward. */

/* 32-byte vectors (AVX; split in two where only 16-byte ones exist), loadable from any
   address of a real. */
#define VLEN ((i64)(32 / sizeof(real)))
typedef real NAME(vec) __attribute__((vector_size(32), aligned(sizeof(real))));
#define SPARTA_CHUNK 64  /* the most outputs a convolution block writes past a plane's end */

/* Scratch planes of one image, per thread. A padded plane has (H + 2r) Wp values; an output
   plane H Wp; each is given 2r + SPARTA_CHUNK more so that whole chunks may be read and
   written past its end. */
typedef struct {
    i64 H, W, r, Wp, L, plane;
    real *in, *act, *out, *grad_out, *grad_pad, *flipped;
} NAME(planes);

static int NAME(planes_alloc)(NAME(planes) *s, i64 H, i64 W, i64 k, i64 hidden, i64 G) {
    s->H = H; s->W = W; s->r = k / 2; s->Wp = W + 2 * s->r; s->L = H * s->Wp;
    s->plane = (H + 2 * s->r) * s->Wp + 2 * s->r + SPARTA_CHUNK;
    i64 wide = hidden > G ? hidden : G;
    s->in = calloc((size_t)(2 * s->plane), sizeof(real));
    s->act = calloc((size_t)(hidden * s->plane), sizeof(real));
    s->out = calloc((size_t)((wide > 2 ? wide : 2) * s->plane), sizeof(real));
    s->grad_out = calloc((size_t)(G * s->plane), sizeof(real));
    s->grad_pad = calloc((size_t)(wide * s->plane), sizeof(real));
    s->flipped = calloc((size_t)(2 * hidden * k * k + hidden * G * k * k), sizeof(real));
    return s->in && s->act && s->out && s->grad_out && s->grad_pad && s->flipped;
}

static void NAME(planes_free)(NAME(planes) *s) {
    free(s->in); free(s->act); free(s->out); free(s->grad_out); free(s->grad_pad); free(s->flipped);
}

/* Pixels (channels planes of rows `row_step` apart, planes `plane_step` apart) into the
   interiors of zero-bordered planes: through relu if asked, or kept where mask > 0. */
static void NAME(pad)(const NAME(planes) *s, const real *src, i64 plane_step, i64 row_step, i64 channels,
                      int relu, real *planes) {
    for (i64 c = 0; c < channels; c++)
        for (i64 y = 0; y < s->H; y++) {
            const real *row = src + c * plane_step + y * row_step;
            real *to = planes + c * s->plane + (y + s->r) * s->Wp + s->r;
            for (i64 x = 0; x < s->W; x++) to[x] = relu && row[x] < 0 ? 0 : row[x];
        }
}

/* The pixels of output planes as channels x H x W maps. */
static void NAME(crop)(const NAME(planes) *s, const real *planes, i64 channels, real *maps) {
    for (i64 c = 0; c < channels; c++)
        for (i64 y = 0; y < s->H; y++) {
            const real *from = planes + c * s->plane + y * s->Wp;
            real *row = maps + (c * s->H + y) * s->W;
            for (i64 x = 0; x < s->W; x++) row[x] = from[x];
        }
}

/* Output planes from maps (channels x H x W), zero off the pixels; with a mask
   (channels x H x W), the planes already there are kept only where mask > 0. */
static void NAME(spread)(const NAME(planes) *s, const real *maps, const real *mask, i64 channels, real *planes) {
    for (i64 c = 0; c < channels; c++)
        for (i64 y = 0; y < s->H; y++) {
            real *row = planes + c * s->plane + y * s->Wp;
            const real *pixels = (mask ? mask : maps) + (c * s->H + y) * s->W;
            for (i64 x = 0; x < s->Wp; x++)
                row[x] = x >= s->W ? 0 : mask ? (pixels[x] > 0 ? row[x] : 0) : pixels[x];
        }
    for (i64 c = 0; c < channels; c++)  /* and past the last pixel, where a block may read */
        for (i64 i = s->L; i < s->L + SPARTA_CHUNK; i++) planes[c * s->plane + i] = 0;
}

/* out[co] = bias[co] (or 0) + sum over ci and taps of w[co, ci] * shifted in[ci].

   A block of COB output channels x PXB vectors of outputs is summed in registers over all
   taps: COB * PXB independent multiply-adds per loaded vector hide their latency. Wide
   layers take 4 channels x 2 vectors (one load serves 4 channels); phi's last layer (G
   maps, often 1) and conv1's transposed (2 maps) take 1 x 8. */
#define CONV_BLOCK(FN, COB, PXB)                                                                    \
static void FN(const NAME(planes) *s, const real *in, i64 cin, const real *w, const real *bias,    \
               i64 cout, i64 k, real *out) {                                                        \
    for (i64 co = 0; co + COB <= cout; co += COB)                                                   \
        for (i64 i0 = 0; i0 < s->L; i0 += PXB * VLEN) {                                           \
            NAME(vec) acc[COB][PXB];                                                                \
            for (int c = 0; c < COB; c++)                                                           \
                for (int v = 0; v < PXB; v++) acc[c][v] = (NAME(vec)){0} + (bias ? bias[co + c] : 0); \
            for (i64 ci = 0; ci < cin; ci++)                                                        \
                for (i64 t = 0; t < k * k; t++) {                                                   \
                    const real *src = in + ci * s->plane + (t / k) * s->Wp + t % k + i0;           \
                    NAME(vec) x[PXB];                                                               \
                    for (int v = 0; v < PXB; v++) x[v] = *(const NAME(vec) *)(src + v * VLEN);     \
                    for (int c = 0; c < COB; c++) {                                                 \
                        real wt = w[((co + c) * cin + ci) * k * k + t];                             \
                        for (int v = 0; v < PXB; v++) acc[c][v] += wt * x[v];                       \
                    }                                                                               \
                }                                                                                   \
            for (int c = 0; c < COB; c++)                                                           \
                for (int v = 0; v < PXB; v++)                                                       \
                    *(NAME(vec) *)(out + (co + c) * s->plane + i0 + v * VLEN) = acc[c][v];          \
        }                                                                                           \
}

CONV_BLOCK(NAME(conv_wide), 4, 2)
CONV_BLOCK(NAME(conv_narrow), 1, 8)
#undef CONV_BLOCK

static void NAME(conv)(const NAME(planes) *s, const real *in, i64 cin, const real *w, const real *bias,
                       i64 cout, i64 k, real *out) {
    if (cout % 4 == 0)
        NAME(conv_wide)(s, in, cin, w, bias, cout, k, out);
    else
        NAME(conv_narrow)(s, in, cin, w, bias, cout, k, out);
}

/* w (cout x cin x k x k) as the kernel of its transposed convolution: cin x cout, taps reversed. */
static void NAME(flip)(const real *w, i64 cout, i64 cin, i64 k, real *flipped) {
    for (i64 co = 0; co < cout; co++)
        for (i64 ci = 0; ci < cin; ci++)
            for (i64 t = 0; t < k * k; t++)
                flipped[(ci * cout + co) * k * k + (k * k - 1 - t)] = w[(co * cin + ci) * k * k + t];
}

/* sum over pixels of g * shifted src for the 9 taps of a 3 x 3 kernel at once: each
   gradient vector loaded serves every tap. */
static void NAME(tap_sums3)(const NAME(planes) *s, const real *g, const real *src, double *to) {
    NAME(vec) acc[9] = {{0}};
    for (i64 i = 0; i < s->L; i += VLEN) {
        NAME(vec) gv = *(const NAME(vec) *)(g + i);
        for (int t = 0; t < 9; t++)
            acc[t] += gv * *(const NAME(vec) *)(src + (t / 3) * s->Wp + t % 3 + i);
    }
    for (int t = 0; t < 9; t++)
        for (int v = 0; v < VLEN; v++) to[t] += acc[t][v];
}

/* The weight and bias gradients of `conv` from grad_out (output planes, zero off the pixels
   and past the last one), added to grad_w and grad_b; 3 x 3 kernels through `tap_sums3`. */
static void NAME(conv_weight_grad)(const NAME(planes) *s, const real *in, i64 cin, i64 cout, i64 k,
                                   const real *grad_out, double *grad_w, double *grad_b) {
    for (i64 co = 0; co < cout; co++) {
        const real *g = grad_out + co * s->plane;
        NAME(vec) total = {0};
        for (i64 i = 0; i < s->L; i += VLEN) total += *(const NAME(vec) *)(g + i);
        for (int v = 0; v < VLEN; v++) grad_b[co] += total[v];
        for (i64 ci = 0; ci < cin; ci++) {
            const real *src = in + ci * s->plane;
            double *to = grad_w + (co * cin + ci) * k * k;
            if (k == 3)
                NAME(tap_sums3)(s, g, src, to);
            else
                for (i64 t = 0; t < k * k; t++) {
                    NAME(vec) acc = {0};
                    const real *shifted = src + (t / k) * s->Wp + t % k;
                    for (i64 i = 0; i < s->L; i += VLEN)
                        acc += *(const NAME(vec) *)(g + i) * *(const NAME(vec) *)(shifted + i);
                    for (int v = 0; v < VLEN; v++) to[t] += acc[v];
                }
        }
    }
}

/* thr (N x G x H x W) = phi(pooled), keeping hidden = relu(conv1(pooled)) (N x h x H x W)
   for backward. w1: h x 2 x k x k, w2: G x h x k x k. Returns 0 when out of memory. */
int NAME(phi)(const real *pooled, const real *w1, const real *b1, const real *w2, const real *b2,
              i64 N, i64 H, i64 W, i64 k, i64 hidden, i64 G, real *hidden_maps, real *thr, int threads) {
    int ok = 1;
    #pragma omp parallel num_threads(threads) if(threads > 1) reduction(&&:ok)
    {
        NAME(planes) s;
        ok = NAME(planes_alloc)(&s, H, W, k, hidden, G);
        #pragma omp for schedule(static)
        for (i64 n = 0; n < N; n++) {
            if (!ok) continue;
            real *kept = hidden_maps + n * hidden * H * W;
            NAME(pad)(&s, pooled + n * 2 * H * W, H * W, W, 2, 0, s.in);
            NAME(conv)(&s, s.in, 2, w1, b1, hidden, k, s.out);
            NAME(pad)(&s, s.out, s.plane, s.Wp, hidden, 1, s.act);
            NAME(conv)(&s, s.act, hidden, w2, b2, G, k, s.out);
            NAME(crop)(&s, s.out, G, thr + n * G * H * W);
            for (i64 c = 0; c < hidden; c++)  /* relu(conv1), for backward */
                for (i64 y = 0; y < H; y++)
                    for (i64 x = 0; x < W; x++)
                        kept[(c * H + y) * W + x] = s.act[c * s.plane + (y + s.r) * s.Wp + x + s.r];
        }
        NAME(planes_free)(&s);
    }
    return ok;
}

/* Gradients of phi from grad_thr: pooled's (N x 2 x H x W) when grad_pooled is not NULL,
   the weights' and biases' (summed over images, in double) when grad_w1 is not NULL. */
int NAME(phi_backward)(const real *pooled, const real *hidden_maps, const real *w1, const real *w2,
                       const real *grad_thr, i64 N, i64 H, i64 W, i64 k, i64 hidden, i64 G,
                       real *grad_pooled, double *grad_w1, double *grad_b1, double *grad_w2,
                       double *grad_b2, int threads) {
    int ok = 1;
    i64 n1 = hidden * 2 * k * k, n2 = G * hidden * k * k;
    #pragma omp parallel num_threads(threads) if(threads > 1) reduction(&&:ok)
    {
        NAME(planes) s;
        ok = NAME(planes_alloc)(&s, H, W, k, hidden, G);
        double *mine = grad_w1 ? calloc((size_t)(n1 + hidden + n2 + G), sizeof(double)) : NULL;
        ok = ok && (!grad_w1 || mine);
        double *w1s = mine, *b1s = mine ? mine + n1 : NULL, *w2s = mine ? mine + n1 + hidden : NULL;
        double *b2s = mine ? w2s + n2 : NULL;
        if (ok) {
            NAME(flip)(w2, G, hidden, k, s.flipped);
            NAME(flip)(w1, hidden, 2, k, s.flipped + hidden * G * k * k);
        }
        #pragma omp for schedule(static)
        for (i64 n = 0; n < N; n++) {
            if (!ok) continue;
            const real *h = hidden_maps + n * hidden * H * W, *g = grad_thr + n * G * H * W;
            NAME(pad)(&s, g, H * W, W, G, 0, s.grad_pad);  /* conv2's input gradient ... */
            NAME(conv)(&s, s.grad_pad, G, s.flipped, NULL, hidden, k, s.out);
            NAME(spread)(&s, NULL, h, hidden, s.out);  /* ... through the relu, in place */
            if (mine) {
                NAME(spread)(&s, g, NULL, G, s.grad_out);
                NAME(pad)(&s, h, H * W, W, hidden, 0, s.act);
                NAME(conv_weight_grad)(&s, s.act, hidden, G, k, s.grad_out, w2s, b2s);
                NAME(pad)(&s, pooled + n * 2 * H * W, H * W, W, 2, 0, s.in);
                NAME(conv_weight_grad)(&s, s.in, 2, hidden, k, s.out, w1s, b1s);
            }
            if (grad_pooled) {  /* conv1's input gradient */
                NAME(pad)(&s, s.out, s.plane, s.Wp, hidden, 0, s.grad_pad);
                NAME(conv)(&s, s.grad_pad, hidden, s.flipped + hidden * G * k * k, NULL, 2, k, s.out);
                NAME(crop)(&s, s.out, 2, grad_pooled + n * 2 * H * W);
            }
        }
        if (mine && ok) {
            #pragma omp critical
            {
                for (i64 i = 0; i < n1; i++) grad_w1[i] += w1s[i];
                for (i64 i = 0; i < hidden; i++) grad_b1[i] += b1s[i];
                for (i64 i = 0; i < n2; i++) grad_w2[i] += w2s[i];
                for (i64 i = 0; i < G; i++) grad_b2[i] += b2s[i];
            }
        }
        free(mine);
        NAME(planes_free)(&s);
    }
    return ok;
}

#undef VLEN
#undef SPARTA_CHUNK
