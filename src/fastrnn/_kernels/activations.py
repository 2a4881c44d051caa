"""Branch-free, vectorisable exp / expm1 / tanh / sigmoid for use inside kernel loops, rounding
like NumPy's.

Inside an ``@njit`` loop ``np.exp`` and ``np.tanh`` are scalar libm calls: Numba has no vector math
library (docs/performance.md, facts 1 and 2).  These helpers use only arithmetic, FMA, integer bit
operations and selects, so LLVM vectorises the loops that call them (checked with ``inspect_asm``).
One algorithm for float32 and float64, constants per dtype; each dtype computes in its own precision
(float32 data: 16 lanes per AVX-512 register).

Accuracy: a numeric gradient check divides the forward's last-bit noise by 2h = 2e-5, so these
functions round about once, like NumPy's.  Measured against long double on dense grids over
their whole range (tests/test_activations.py): mean 0.17-0.23 ulp, max 0.71-0.79 ulp, float32
and float64 alike (NumPy's float64 tanh: 0.23 / 1.18).  It takes three things:

* exp(y), y <= 0, by Cody-Waite: n = rint(y / ln 2), r = y - n ln 2 with ln 2 split in a short
  high part (n * LN2_HI and y - n * LN2_HI are exact) and a low part, |r| <= ln2/2, r carried
  as an unevaluated sum rh + rl (the rounding of y - n ln 2 alone is up to 0.25 ulp of the
  result).  exp(r) - 1 = q = r + (r^2/2 + r^3 P(r)) is carried as qh + ql: r plus the small
  part (< 0.07, rounded once) summed with its exact error; P is a Chebyshev fit.  So exp(y) =
  2^n (1 + q) is known to ~2^-56 (0.1 ulp) before its final rounding, and
  expm1(y) = 2^n q + (2^n - 1) keeps its relative accuracy near 0 (n = 0: exactly q).
* tanh|x| = (1 - e) / (1 + e), e = exp(-2|x|), and sigmoid = 1 / (1 + e) or e / (1 + e),
  e = exp(-|x|): numerator and denominator as such sums, the quotient corrected once by FMA
  (q0 = N / D rounded, then q0 + (N - q0 D) / D, the remainder exact).  Below 2^-27 (2^-13 in
  float32),
  where 1 - e would lose the low bits of 2|x|, tanh(x) rounds to x and is x.
* Gradual underflow: exp and sigmoid return the rounded subnormal, not 0: the result is scaled
  by 2^(n + 64) (a normal number) and then by 2^-64, which rounds once (a result rounded to 53
  bits, then to a subnormal's fewer: up to 0.78 ulp there).  +-inf give the exact limits, NaN
  propagates.

Cost: about twice the arithmetic of versions that round at every step (1-3 ulp; the measured
cost per element is in docs/performance.md, M24).

These helpers are compiled with their own, stricter fastmath flags (no reassociation, which would
fold the error-free sums away), forced inline (LLVM's alwaysinline) into the kernels that call
them.
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .._jit import EXACT_OPTIONS, jit


@intrinsic
def _float_bits(typingctx, value):
    """The IEEE bit pattern of a float32 / float64 as int32 / int64."""
    width = value.bitwidth
    result = types.int32 if width == 32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(width))
    return result(value), codegen


@intrinsic
def _bits_float(typingctx, bits):
    """The float32 / float64 whose IEEE bit pattern is the int32 / int64 ``bits``."""
    width = bits.bitwidth
    result = types.float32 if width == 32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType() if width == 32 else ir.DoubleType())
    return result(bits), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (``llvm.fma``: a vector FMA instruction once vectorised)."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


class _Consts:
    """Per-dtype constants of the exp kernel."""

    def __init__(self, ftype, mantissa_bits, exp_bias, lowest, tanh_lowest, ln2_hi, ln2_lo,
                 coeffs):
        self.ftype = ftype
        self.shift = mantissa_bits
        # rint(t) + magic puts (n + bias) into the low mantissa bits; the mask takes them out.
        self.magic = 1.5 * 2.0 ** mantissa_bits + exp_bias
        self.mask = 2 * exp_bias + 1
        # exp(lowest) rounds to 0 (below half the smallest subnormal): inputs are clamped there,
        # so 2^(n + 64) stays a normal number and the clamped result still rounds to 0.
        self.lowest = lowest
        # exp(-2|x|) below exp(tanh_lowest) changes no rounding of tanh(x) (it is 1); so
        # 2^n stays normal there.
        self.tanh_lowest = tanh_lowest
        # below it tanh(x) rounds to x (x^3 / 3 is under half an ulp of x)
        self.tanh_tiny = 2.0 ** -((mantissa_bits + 3) // 2)
        self.log2e = 1.0 / math.log(2.0)
        self.ln2_hi = ln2_hi  # few mantissa bits: n * ln2_hi is exact for the n that occur
        self.ln2_lo = ln2_lo  # ln 2 - ln2_hi, rounded once (not log(2) - hi: log(2) is rounded)
        self.coeffs = coeffs


# ln 2 splits of fdlibm (float64) and Cephes (float32).  P(r) ~ (e^r - 1 - r - r^2/2) / r^3:
# the polynomial that interpolates it at the Chebyshev nodes of |r| <= ln2/2 (computed in long
# double; near-minimax), max |r^3 (P - p)| = 2^-60.3 (float64, degree 9) and 2^-31.5 (float32,
# degree 4), i.e. below 2^-7 ulp of the result.
_F64 = _Consts(np.float64, 52, 1023, -746.0, -40.0, 6.93147180369123816490e-01,
               1.90821492927058770002e-10,
               (0.16666666666666669, 0.041666666666666664, 0.00833333333333005,
                0.0013888888888886728, 0.00019841269863111628, 2.4801587316543027e-05,
                2.7557268371759478e-06, 2.7557283710945645e-07, 2.510042664969588e-08,
                2.0910941922058276e-09))
_F32 = _Consts(np.float32, 23, 127, -104.0, -20.0, 0.693359375, -2.12194440e-4,
               (0.16666667, 0.041666556, 0.008333321, 0.0013926213, 0.00019882731))
UNDERFLOW_SHIFT = 64  # 2^(n + 64) is normal for every n >= lowest / ln 2


def _stub(name):
    def stub(*args):
        raise NotImplementedError(f"{name} is only callable from Numba-compiled code")
    stub.__name__ = name
    return stub


exp_reduced = _stub("exp_reduced")
exp_dd = _stub("exp_dd")
pow2 = _stub("pow2")
quotient = _stub("quotient")
expm1_nonpos = _stub("expm1_nonpos")
exp_nonpos = _stub("exp_nonpos")
tanh = _stub("tanh")
sigmoid = _stub("sigmoid")
gate = _stub("gate")


def _consts(numba_type):
    return _F32 if numba_type == types.float32 else _F64


@overload(pow2, jit_options=EXACT_OPTIONS)
def _pow2(n):
    """2^n for a whole number n (a float) in the normal range, from its exponent bits."""
    c = _consts(n)
    ftype, shift, mask = c.ftype, c.shift, c.mask
    # Numba widens int32 arithmetic to int64: cast back before reinterpreting as float32.
    itype = np.int32 if ftype is np.float32 else np.int64
    magic = ftype(c.magic)

    def impl(n):
        return _bits_float(itype((_float_bits(n + magic) & mask) << shift))
    return impl


@overload(exp_reduced, jit_options=EXACT_OPTIONS)
def _exp_reduced(y):
    """(n, qh, ql) with exp(y) = 2^n (1 + qh + ql) to ~2^-56 relative, for lowest <= y <= 0
    (callers clamp).  |qh| < 0.42, |ql| <= 2 ulp(qh).  NaN in, NaN out."""
    c = _consts(y)
    ftype = c.ftype
    log2e, ln2_hi, ln2_lo = ftype(c.log2e), ftype(c.ln2_hi), ftype(c.ln2_lo)
    half = ftype(0.5)
    coeffs = tuple(ftype(v) for v in c.coeffs)
    last = len(coeffs) - 1

    def impl(y):
        n = np.rint(y * log2e)
        t = y - n * ln2_hi  # exact (Sterbenz: y and n * ln2_hi are within a factor 2)
        p = n * ln2_lo  # its rounding is ~2^-53 * 2e-7: negligible
        rh = t - p
        rl = (t - rh) - p  # the rounding error of rh (exact while |t| >= |p|, else tiny anyway)
        r2 = rh * rh
        poly = coeffs[last]
        for j in range(last - 1, -1, -1):
            poly = poly * rh + coeffs[j]
        small = r2 * (half + rh * poly)  # r^2/2 + r^3 P(r), |small| < 0.07
        qh = rh + small  # |rh| >= |small|: the error of this sum is exact
        ql = ((rh - qh) + small) + rl  # rl * r and the rounding of r^2 are below 2^-56
        return n, qh, ql
    return impl


@overload(exp_dd, jit_options=EXACT_OPTIONS)
def _exp_dd(y):
    """(n, ph, pl) with exp(y) = 2^n (ph + pl), ph in [0.7, 1.42] and |pl| <= ulp(ph), for
    lowest <= y <= 0 (callers clamp).  NaN in, NaN out."""
    one = _consts(y).ftype(1)

    def impl(y):
        n, qh, ql = exp_reduced(y)
        ph = one + qh
        return n, ph, ((one - ph) + qh) + ql
    return impl


@overload(quotient, jit_options=EXACT_OPTIONS)
def _quotient(nh, nl, dh, dl):
    """(nh + nl) / (dh + dl) rounded once, for dh in [1, 2] and small low parts: one
    division, then the remainder nh - q0 dh, exact by FMA, corrects the rounded quotient q0."""
    one = _consts(nh).ftype(1)

    def impl(nh, nl, dh, dl):
        inv = one / dh
        q0 = nh * inv
        remainder = _fma(-q0, dh, nh) + (nl - q0 * dl)
        return _fma(remainder, inv, q0)
    return impl


@overload(exp_nonpos, jit_options=EXACT_OPTIONS)
def _exp_nonpos(y):
    """exp(y) for y <= 0 (-inf -> 0), rounded once, subnormal results included; NaN -> NaN."""
    c = _consts(y)
    ftype = c.ftype
    lowest = ftype(c.lowest)
    up, down = ftype(UNDERFLOW_SHIFT), ftype(2.0 ** -UNDERFLOW_SHIFT)

    def impl(y):
        n, ph, pl = exp_dd(lowest if y < lowest else y)  # (NaN stays NaN)
        # 2^(n + 64) is normal, the product exact; the last one rounds a subnormal once, and
        # exp(lowest) to 0.
        return ((ph + pl) * pow2(n + up)) * down
    return impl


@overload(expm1_nonpos, jit_options=EXACT_OPTIONS)
def _expm1_nonpos(y):
    """exp(y) - 1 for y <= 0 (-inf -> -1), rounded once; NaN -> NaN."""
    c = _consts(y)
    ftype = c.ftype
    lowest, one = ftype(c.tanh_lowest), ftype(1)

    def impl(y):
        n, qh, ql = exp_reduced(lowest if y < lowest else y)
        scale = pow2(n)
        # 2^n q + (2^n - 1): both exact (n >= -58), their sum's error too (|2^n - 1| >= |2^n q|,
        # or 2^n = 1)
        h = scale - one
        a = scale * qh
        hi = h + a
        return hi + (((h - hi) + a) + scale * ql)
    return impl


@overload(tanh, jit_options=EXACT_OPTIONS)
def _tanh(x):
    """tanh in x's precision, rounded once; exactly +-1 in saturation, NaN -> NaN."""
    def impl(x):
        return gate(x, True)
    return impl


@overload(sigmoid, jit_options=EXACT_OPTIONS)
def _sigmoid(x):
    """Logistic 1 / (1 + e^-x) in x's precision, rounded once, subnormal results included;
    never overflows; NaN -> NaN."""
    def impl(x):
        return gate(x, False)
    return impl


@overload(gate, jit_options=EXACT_OPTIONS)
def _gate(a, is_tanh):
    """tanh(a) if ``is_tanh`` else sigmoid(a), for the LSTM's four gates in one vectorised pass:
    both are a quotient by 1 + e, e = exp(-k|a|) (k = 2 for tanh), of 1 - e (tanh|a|), 1
    (sigmoid, a >= 0) or e (sigmoid, a < 0)."""
    c = _consts(a)
    ftype = c.ftype
    lowest, tanh_lowest, tiny = ftype(c.lowest), ftype(c.tanh_lowest), ftype(c.tanh_tiny)
    zero, one = ftype(0), ftype(1)
    up, down = ftype(UNDERFLOW_SHIFT), ftype(2.0 ** -UNDERFLOW_SHIFT)

    def impl(a, is_tanh):
        magnitude = abs(a)
        y = -(magnitude + magnitude) if is_tanh else -magnitude
        floor = tanh_lowest if is_tanh else lowest
        n, ph, pl = exp_dd(floor if y < floor else y)  # (NaN stays NaN, and propagates)
        scale_up = pow2(n + up)
        scale = scale_up * down  # 2^n; subnormal or 0 below 2^-1022, where only 1 + e uses it
        eh = scale * ph
        el = scale * pl
        # 1 + e and 1 - e, each with the exact error of its sum (e <= 1)
        dh = one + eh
        dl = ((one - dh) + eh) + el
        mh = one - eh
        ml = ((one - mh) - eh) - el
        negative = a < 0
        # every candidate computed, then plain selects: no branch stops the vectoriser
        nh = mh if is_tanh else (ph if negative else one)
        nl = ml if is_tanh else (pl if negative else zero)
        t = quotient(nh, nl, dh, dl)
        # sigmoid(a < 0) = 2^n p / (1 + e): the one rounding of a subnormal is the last product
        scaled = (t * scale_up) * down
        # tanh: below `tiny`, 1 - e loses the low bits of 2|a|, and tanh(a) rounds to a
        th = magnitude if magnitude < tiny else t
        signed = -th if negative else th
        return signed if is_tanh else (scaled if negative else t)
    return impl


@jit
def sigmoid_kernel(x, out):
    """out = sigmoid(x), elementwise over flat contiguous arrays."""
    for i in range(x.size):
        out[i] = sigmoid(x[i])
