/* The elementwise passes of a pooled Sparta site, for the CPU (sparta/site/native.py).

   y = x * s,  s = sigmoid(beta_c * (x - T[n, g(c)])),  on x: N x C x P (P = H * W, contiguous).

   Forward is two passes over x (channel mean, max and its tie count; then the gate),
   backward two over the gradient (the gate's gradient with the sums that T and beta
   need; then the channel mean's and max's shares once phi has given their gradients).
   Autograd runs the same site as about ten passes each way.

   Each function exists for float and double (the SPARTA_SITE macro below). Loops over
   P are innermost so the compiler vectorises them; images are split across threads.
   Paper: arXiv:2105.08269. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t i64;

#define real float
#define NAME(name) sparta_##name##_f32
#define EXP expf
#include "site_body.h"
#include "phi_body.h"
#undef real
#undef NAME
#undef EXP

#define real double
#define NAME(name) sparta_##name##_f64
#define EXP exp
#include "site_body.h"
#include "phi_body.h"
