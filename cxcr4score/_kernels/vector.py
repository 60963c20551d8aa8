"""Table rows loaded and added as single vectors (LLVM intrinsics with NumPy twins)."""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


# Numba leaves LLVM's SLP vectoriser off, so a row of a table is loaded and added lane by
# lane; the loop vectoriser would turn the table lookups into gathers, which are slower than
# scalar loads on some CPUs and slower than these intrinsics on all we measured
# (docs/performance.md). The two intrinsics below load and add table rows as single vectors. Each lane is the same IEEE
# float32 or int64 operation as the scalar code, so results are bit-identical; under
# NUMBA_DISABLE_JIT the NumPy twins run.
def _row_of_four(context, builder, array_type, array, index_type, index, width=4):
    """Pointer to row ``index`` of a C-contiguous (n, width) array, typed as a width-lane vector."""
    data = context.make_array(array_type)(context, builder, array).data
    offset = builder.mul(context.cast(builder, index, index_type, types.int64), ir.Constant(ir.IntType(64), width))
    vector = ir.VectorType(context.get_data_type(array_type.dtype), width)
    return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())


def _is_rows_of_four(array, dtype):
    # Typing sees rank, layout and dtype only: callers must pass (n, 4) arrays and row indices
    # within them (measure_cells and deconvolve build every such array themselves; the kernels
    # read pair-table rows 256 r + g and RG_ROWS + b of uint8 values, and no bounds are checked).
    return isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C" and array.dtype == dtype


def _is_plane(array):
    return isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.float32


@intrinsic
def _sum_rows_into_planes_jit(typingctx, planes, j, table, ia, ib):
    """planes[lane][j] = (table[ia] + table[ib])[lane] for each plane of the tuple ``planes``:
    one vector load per table row (rows as wide as the planes are many: 2 or 4)."""
    if not (isinstance(planes, types.UniTuple) and planes.count in (2, 3) and _is_plane(planes.dtype)
            and _is_rows_of_four(table, types.float32)):
        return None
    width = 2 if planes.count == 2 else 4

    def codegen(context, builder, signature, args):
        planes_value, j_value, table_value, ia_value, ib_value = args
        planes_type, j_type, table_type, ia_type, ib_type = signature.args
        x = builder.load(_row_of_four(context, builder, table_type, table_value, ia_type, ia_value, width), align=4)
        y = builder.load(_row_of_four(context, builder, table_type, table_value, ib_type, ib_value, width), align=4)
        total = builder.fadd(x, y)
        j_index = context.cast(builder, j_value, j_type, types.intp)
        for lane in range(planes_type.count):
            plane = context.make_array(planes_type.dtype)(context, builder, builder.extract_value(planes_value, lane))
            target = cgutils.get_item_pointer(context, builder, planes_type.dtype, plane, [j_index], wraparound=False)
            builder.store(builder.extract_element(total, ir.Constant(ir.IntType(32), lane)), target)
        return context.get_dummy_value()

    return types.void(planes, j, table, ia, ib), codegen


def _sum_rows_into_planes_py(planes, j, table, ia, ib):
    """planes[lane][j] = (table[ia] + table[ib])[lane], float32."""
    total = table[ia] + table[ib]
    for lane, plane in enumerate(planes):
        plane[j] = total[lane]


@intrinsic
def _add_difference_jit(typingctx, out, o, a, ia, ib):
    if not (_is_rows_of_four(out, types.int64) and _is_rows_of_four(a, types.int64)):
        return None

    def codegen(context, builder, signature, args):
        out_value, o_value, a_value, ia_value, ib_value = args
        out_type, o_type, a_type, ia_type, ib_type = signature.args
        target = _row_of_four(context, builder, out_type, out_value, o_type, o_value)
        x = builder.load(_row_of_four(context, builder, a_type, a_value, ia_type, ia_value), align=8)
        y = builder.load(_row_of_four(context, builder, a_type, a_value, ib_type, ib_value), align=8)
        builder.store(builder.add(builder.load(target, align=8), builder.sub(x, y)), target, align=8)
        return context.get_dummy_value()

    return types.void(out, o, a, ia, ib), codegen


def _add_difference_py(out, o, a, ia, ib):
    """out[o] += a[ia] - a[ib], rows of four int64."""
    out[o] += a[ia] - a[ib]


if numba.config.DISABLE_JIT:
    _sum_rows_into_planes, _add_difference = _sum_rows_into_planes_py, _add_difference_py
else:
    _sum_rows_into_planes, _add_difference = _sum_rows_into_planes_jit, _add_difference_jit
