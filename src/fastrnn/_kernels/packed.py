"""A small-batch matrix product with pre-packed weights, for the per-step recurrent product.

OpenBLAS re-packs the whole weight matrix on every call; at the recurrent step's batch sizes
(M = N = 25..100 rows) that packing and its thin micro-tiles cost about half its speed
(docs/performance.md, M11).  Here the weights are packed
once per sequence call into column panels ``Bp[p, k, :] = B[k, p*NR:(p+1)*NR]`` (zero-padded),
and a register-blocked micro-kernel keeps an MR x NR tile of C in vector registers while it
streams one panel (the BLIS / oneDNN structure).  The micro-kernel is written as LLVM IR with
explicit vector types, so the register blocking does not depend on what the auto-vectoriser
makes of a loop nest.

Summation: each output accumulates at most KC products in one register, then the partial sums
are added to the tile, so a long dot product (K = 4H in backward) is summed in blocks; the
rounding error grows like KC + K/KC instead of K.  KC is 64 in float32: at 256 three of the
eight float32 benchmark rows came out 1.02-1.11x less accurate than the classic code's OpenBLAS
(max error against float64); at 64 all are 0.43-0.64x of it, for a few per cent of speed
(docs/performance.md, M12).  float64 keeps
KC = 256 (its error is ~1e-15 either way).

Panels are independent, so they are spread over the Numba threads (``prange``); when there are
too few of them to share out evenly, each panel's rows are split too.  A result never depends on
the thread count (each element is summed in the same order by whichever thread).

Every function here is ``inline='always'``: its ``prange`` loops become part of the calling kernel,
which is compiled ``parallel=True`` (prange only).  A cached kernel that *calls* a separately
compiled parallel function crashes when a new process loads it from the disk cache (a null
function pointer; numba issues #8578 and #9938), so no parallel function is ever a callee.
"""
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .._jit import VECTOR_BYTES, jit
from .linalg import gemm


MR = 5  # rows per micro-tile: 25, 50 and 100 (the usual batch sizes) split evenly
# Products summed in registers before they are added to the tile (see Summation above).
KC_FLOAT64 = 256
KC_FLOAT32 = 64
_VECTORS = 4 if VECTOR_BYTES >= 64 else 2  # accumulator vectors per row: MR*_VECTORS + _VECTORS
#                                             + 1 registers, within 32 (AVX-512) / 16 (AVX2)


TASKS_MIN = 8  # (panel, rows) tasks a product is split into at least, where its rows allow

# Below this many multiply-adds per product, OpenBLAS (or the plain loop) wins: the tile set-up
# and the thread launch cost more than the better blocking saves (docs/performance.md, M13).
PACKED_MIN = 1 << 18


@jit(inline="always")
def block_depth(itemsize):
    """KC, the products summed in registers before they are added to the tile."""
    return KC_FLOAT32 if itemsize == 4 else KC_FLOAT64


@jit(inline="always")
def panel_width(itemsize):
    """NR, the columns of one panel, for a float of ``itemsize`` bytes."""
    return _VECTORS * VECTOR_BYTES // itemsize


@intrinsic
def _micro_tile(typingctx, a, a_start, a_rows, a_cols, rows, bp, b_start, ldb, k_count, tile,
                add):
    """tile[MR, NR] (+)= A[MR, k_count] @ B[k_count, NR] (+= when ``add``), flat indexing: A[r, k]
    is ``a[a_start + r * a_rows + k * a_cols]`` (a C-order or a transposed matrix), B's rows are
    ``ldb`` apart (NR in a packed panel).  The products are summed in registers, then added to
    the tile.

    Rows past ``rows`` repeat the last valid row (their results are discarded by the caller),
    so A is never read out of bounds.
    """
    dtype = a.dtype
    lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
    nr = _VECTORS * lanes

    def codegen(context, builder, signature, args):
        a_arr, a_start, a_rows, a_cols, rows, b_arr, b_start, ldb, k_count, tile_arr, add = args
        a_data = context.make_array(signature.args[0])(context, builder, a_arr).data
        b_data = context.make_array(signature.args[5])(context, builder, b_arr).data
        t_data = context.make_array(signature.args[9])(context, builder, tile_arr).data
        i64 = ir.IntType(64)
        ftype = context.get_value_type(dtype)
        vtype = ir.VectorType(ftype, lanes)
        align = dtype.bitwidth // 8
        zero = ir.Constant(vtype, [ir.Constant(ftype, 0.0)] * lanes)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vtype, [vtype] * 3),
            f"llvm.fma.v{lanes}f{dtype.bitwidth}")
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

        def vector_at(data, index):
            return builder.bitcast(builder.gep(data, [index]), vtype.as_pointer())

        last = builder.sub(rows, ir.Constant(i64, 1))
        row_start = []
        for r in range(MR):
            rr = ir.Constant(i64, r)
            clamped = builder.select(builder.icmp_signed("<", rr, rows), rr, last)
            row_start.append(builder.add(a_start, builder.mul(clamped, a_rows)))
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(_VECTORS)]
                for _ in range(MR)]
        with cgutils.for_range(builder, k_count) as loop:
            k = loop.index
            b_row = builder.add(b_start, builder.mul(k, ldb))
            a_k = builder.mul(k, a_cols)
            bs = [builder.load(vector_at(b_data, builder.add(b_row, ir.Constant(i64, v * lanes))),
                               align=align) for v in range(_VECTORS)]
            for r in range(MR):
                a_rk = builder.load(builder.gep(a_data, [builder.add(row_start[r], a_k)]))
                one = builder.insert_element(ir.Constant(vtype, ir.Undefined), a_rk,
                                             ir.Constant(ir.IntType(32), 0))
                splat = builder.shuffle_vector(one, ir.Constant(vtype, ir.Undefined), splat_mask)
                for v in range(_VECTORS):
                    builder.store(builder.call(fma, [splat, bs[v], builder.load(accs[r][v])]),
                                  accs[r][v])
        for r in range(MR):
            for v in range(_VECTORS):
                target = vector_at(t_data, ir.Constant(i64, r * nr + v * lanes))
                acc = builder.load(accs[r][v])
                total = builder.fadd(builder.load(target, align=align), acc)
                builder.store(builder.select(add, total, acc), target, align=align)
        return context.get_dummy_value()

    sig = types.void(a, types.intp, types.intp, types.intp, types.intp, bp, types.intp,
                     types.intp, types.intp, tile, types.boolean)
    return sig, codegen


@jit(inline="always")
def _pack_into(b, out):
    """out[p, k, :] = b[k, p*width:(p+1)*width], zero-padded; b may be ``W.T``."""
    K, P = b.shape
    width = out.shape[2]
    rows_contiguous = b.strides[1] == b.itemsize
    for p in prange(out.shape[0]):
        cols = min(width, P - p * width)
        panel = out[p]
        if cols < width:
            panel[:] = 0
        if rows_contiguous:
            for k in range(K):
                panel[k, :cols] = b[k, p * width:p * width + cols]
        else:  # b = W.T: read W's rows (contiguous), in blocks that stay in cache
            for k0 in range(0, K, 16):
                k1 = min(K, k0 + 16)
                for j in range(cols):
                    panel[k0:k1, j] = b[k0:k1, p * width + j]


@jit(inline="always")
def pack_panels(b, width, scratch):
    """(K, P) -> (ceil(P / width), K, width) column panels, zero-padded, in ``scratch`` when it is
    large enough (a reused buffer spares the page faults of a fresh multi-MB allocation:
    docs/performance.md, M6), else in a new array."""
    K, P = b.shape
    panels = (P + width - 1) // width
    size = panels * K * width
    flat = scratch[:size] if scratch.size >= size else np.empty(size, dtype=b.dtype)
    out = flat.reshape((panels, K, width))
    _pack_into(b, out)
    return out


def _flat_operand(a):
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(_flat_operand, inline="always")
def _flat_operand_impl(a):
    """(the elements of a (M, K) in memory order, step between rows, step between columns):
    no copy for a C-order matrix or a transposed one (``X.T``); a copy otherwise."""
    if a.layout == "C":
        return lambda a: (a.reshape(a.size), a.shape[1], 1)
    if a.layout == "F":
        return lambda a: (a.T.reshape(a.size), 1, a.shape[0])
    return lambda a: (np.ascontiguousarray(a).reshape(a.size), a.shape[1], 1)


@jit(inline="always")
def packed_gemm(a, panels, out, accumulate):
    """out (M, P) (+)= a (M, K) @ B, with B given as :func:`pack_panels` of it.

    a is C-order or transposed (``X.T``); out is C-contiguous; P is out's width (the panels
    may be zero-padded past it).
    """
    M, K = a.shape
    P = out.shape[1]
    width = panels.shape[2]
    kc = block_depth(a.itemsize)
    flat_a, a_rows, a_cols = _flat_operand(a)
    flat_b = panels.reshape(panels.size)
    n_panels = panels.shape[0]
    blocks = (M + MR - 1) // MR
    # Few panels (a 30-column product has one): split each panel's rows too, so that there
    # are TASKS_MIN tasks or more to share out over the threads.  (Numba's get_num_threads
    # would make the kernels uncacheable.)
    chunks = max(1, min((TASKS_MIN + n_panels - 1) // n_panels, blocks))
    for task in prange(n_panels * chunks):
        p = task // chunks
        chunk = task - p * chunks
        tile = np.empty(MR * width, dtype=a.dtype)
        cols = min(width, P - p * width)
        for block in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
            i0 = block * MR
            rows = min(MR, M - i0)
            # kc products at a time summed in registers, then added to the tile (the first
            # block sets it: a short K is one pass; docs/performance.md, M14).
            for k0 in range(0, max(K, 1), kc):
                _micro_tile(flat_a, i0 * a_rows + k0 * a_cols, a_rows, a_cols, rows, flat_b,
                            (p * K + k0) * width, width, min(kc, K - k0), tile, k0 > 0)
            for r in range(rows):
                row = out[i0 + r, p * width:p * width + cols]
                if accumulate:
                    for j in range(cols):
                        row[j] += tile[r * width + j]
                else:
                    for j in range(cols):
                        row[j] = tile[r * width + j]


@jit(inline="always")
def pack_for_product(rows, b, scratch):
    """Panels of b (K, P) for products with ``rows``-row left operands, or an empty array when
    those products are too small for the packed kernel (then :func:`product` uses BLAS).

    The panels live in ``scratch`` when it holds :func:`scratch_size` elements: one set of
    panels at a time, so the previous set is dead once this is called."""
    K, P = b.shape
    if rows * K * P < PACKED_MIN:
        return np.empty((0, K, 1), dtype=b.dtype)
    return pack_panels(b, panel_width(b.itemsize), scratch)


@jit(inline="always")
def product(a, b, panels, out, accumulate):
    """out (+)= a @ b, through ``panels = pack_for_product(len(a), b)``."""
    if panels.shape[0]:
        packed_gemm(a, panels, out, accumulate)
    else:
        gemm(a, b, out, accumulate)


@jit(inline="always")
def dot_packed(a, b, panels):
    """a (M, K) @ b (K, P) as a new C-contiguous array, given ``panels`` of b (or none)."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    product(a, b, panels, out, False)
    return out


@jit(inline="always")
def dot(a, b, scratch):
    """a (M, K) @ b (K, P) as a new C-contiguous array (either operand may be transposed);
    packs b into ``scratch`` (see :func:`pack_for_product`)."""
    return dot_packed(a, b, pack_for_product(a.shape[0], b, scratch))


def scratch_size(*shapes):
    """Elements of a scratch buffer that holds the panels of any one of these (K, P) matrices
    (panel widths are at most 64 columns on every target)."""
    return max(K * -(-P // 64) * 64 for K, P in shapes)
