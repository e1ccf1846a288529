//! `aloop_pg_result_*`: typed access to a result: columns by name, type OIDs and formats,
//! getters that decode text or binary values and say why they cannot.

use std::ffi::{c_char, c_int, c_void};

use super::pg::{aloop_pg_result_t, ok_result};
use super::{c_str, guard, handle, not_null};
use crate::error::Error;
use crate::pg::{PgResult, ValueError};

/// A typed getter found SQL NULL.
pub const ALOOP_E_PG_NULL: c_int = -10105;
/// A typed getter was used on a column of another type, or the value does not decode.
pub const ALOOP_E_PG_TYPE: c_int = -10106;

/// Type OID of `bool` (`aloop_pg_result_column_type`).
pub const ALOOP_PG_OID_BOOL: u32 = 16;
/// Type OID of `bytea`.
pub const ALOOP_PG_OID_BYTEA: u32 = 17;
/// Type OID of `int8` (bigint).
pub const ALOOP_PG_OID_INT8: u32 = 20;
/// Type OID of `int2` (smallint).
pub const ALOOP_PG_OID_INT2: u32 = 21;
/// Type OID of `int4` (integer).
pub const ALOOP_PG_OID_INT4: u32 = 23;
/// Type OID of `text`.
pub const ALOOP_PG_OID_TEXT: u32 = 25;
/// Type OID of `oid`.
pub const ALOOP_PG_OID_OID: u32 = 26;
/// Type OID of `json`.
pub const ALOOP_PG_OID_JSON: u32 = 114;
/// Type OID of `float4` (real).
pub const ALOOP_PG_OID_FLOAT4: u32 = 700;
/// Type OID of `float8` (double precision).
pub const ALOOP_PG_OID_FLOAT8: u32 = 701;
/// Type OID of `varchar`.
pub const ALOOP_PG_OID_VARCHAR: u32 = 1043;
/// Type OID of `numeric`.
pub const ALOOP_PG_OID_NUMERIC: u32 = 1700;

/// Runs `f` on a successful result, or says why not: `ALOOP_E_NULL`, `ALOOP_E_STALE`
/// (outside its callback), `ALOOP_E_WRONG_THREAD`, `ALOOP_E_INVALID` (an error result).
fn with_ok<R>(r: *const aloop_pg_result_t, f: impl FnOnce(&PgResult) -> R) -> Result<R, Error> {
    handle::with(r, |x: &aloop_pg_result_t| x.outcome.as_ref().ok().map(f))
        .and_then(|o| o.ok_or(Error::INVALID))
}

fn code(e: ValueError) -> c_int {
    e.code().code()
}

/// The index of the first column named exactly `name`, or a negative error:
/// `ALOOP_E_NOT_FOUND`, `ALOOP_E_NULL`, `ALOOP_E_INVALID` (an error result), `ALOOP_E_STALE`.
#[no_mangle]
pub extern "C" fn aloop_pg_result_column_index(
    r: *const aloop_pg_result_t,
    name: *const c_char,
) -> isize {
    guard(|| {
        if name.is_null() {
            return Error::NULL_ARG.code() as isize;
        }
        // SAFETY: a C string per the contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return Error::NOT_FOUND.code() as isize;
        };
        match with_ok(r, |x| x.column_index(name)) {
            Ok(Some(i)) => i as isize,
            Ok(None) => Error::NOT_FOUND.code() as isize,
            Err(e) => e.code() as isize,
        }
    })
}

/// The type OID of column `col` (`ALOOP_PG_OID_*`), or 0 out of range or for an error result.
#[no_mangle]
pub extern "C" fn aloop_pg_result_column_type(r: *const aloop_pg_result_t, col: usize) -> u32 {
    guard(|| ok_result(r, 0, |x| x.column_type(col).unwrap_or(0)))
}

/// 1 if column `col` came in binary format (`ALOOP_PG_BINARY`), else 0.
#[no_mangle]
pub extern "C" fn aloop_pg_result_column_is_binary(
    r: *const aloop_pg_result_t,
    col: usize,
) -> c_int {
    guard(|| ok_result(r, 0, |x| x.is_binary(col) as c_int))
}

/// Writes the `int2`, `int4`, `int8` or `oid` value at (`row`, `col`) to `*out`. Errors
/// (`*out` not written): `ALOOP_E_PG_NULL` (SQL NULL), `ALOOP_E_PG_TYPE` (another type, or a
/// malformed value), `ALOOP_E_NOT_FOUND` (no such row or column), `ALOOP_E_NULL`,
/// `ALOOP_E_INVALID` (an error result), `ALOOP_E_STALE`.
#[no_mangle]
pub extern "C" fn aloop_pg_result_get_int64(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
    out: *mut i64,
) -> c_int {
    guard(|| {
        not_null!(out);
        match with_ok(r, |x| x.get_i64(row, col)) {
            // SAFETY: out is non-NULL and writable.
            Ok(Ok(v)) => unsafe { out.write(v) },
            Ok(Err(e)) => return code(e),
            Err(e) => return e.code(),
        }
        0
    })
}

/// Writes the `float4`, `float8`, `numeric` (or integer) value at (`row`, `col`) to `*out`.
/// Errors as for `aloop_pg_result_get_int64`.
#[no_mangle]
pub extern "C" fn aloop_pg_result_get_double(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
    out: *mut f64,
) -> c_int {
    guard(|| {
        not_null!(out);
        match with_ok(r, |x| x.get_f64(row, col)) {
            // SAFETY: out is non-NULL and writable.
            Ok(Ok(v)) => unsafe { out.write(v) },
            Ok(Err(e)) => return code(e),
            Err(e) => return e.code(),
        }
        0
    })
}

/// Writes the `bool` value at (`row`, `col`) to `*out` (1 or 0). Errors as for
/// `aloop_pg_result_get_int64`.
#[no_mangle]
pub extern "C" fn aloop_pg_result_get_bool(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
    out: *mut c_int,
) -> c_int {
    guard(|| {
        not_null!(out);
        match with_ok(r, |x| x.get_bool(row, col)) {
            // SAFETY: out is non-NULL and writable.
            Ok(Ok(v)) => unsafe { out.write(v as c_int) },
            Ok(Err(e)) => return code(e),
            Err(e) => return e.code(),
        }
        0
    })
}

/// Points `*out` at the value at (`row`, `col`) as NUL-terminated UTF-8 text, borrowed from
/// the result (valid during its callback), and writes its length to `*len` (may be NULL). Any
/// column in text format; in binary format, the text types only. Errors (nothing written) as
/// for `aloop_pg_result_get_int64` (`ALOOP_E_PG_TYPE` also for text that is not UTF-8).
#[no_mangle]
pub extern "C" fn aloop_pg_result_get_text(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
    out: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    guard(|| {
        not_null!(out);
        match with_ok(r, |x| x.get_text(row, col).map(|t| (t.as_ptr(), t.len()))) {
            Ok(Ok((p, n))) => {
                // SAFETY: out is non-NULL and writable, len writable when non-NULL; libpq
                // terminates every value with a NUL byte.
                unsafe {
                    out.write(p.cast());
                    if !len.is_null() {
                        len.write(n);
                    }
                }
                0
            }
            Ok(Err(e)) => code(e),
            Err(e) => e.code(),
        }
    })
}

/// Decodes the `bytea` value at (`row`, `col`) (hex or escape text, or binary) into `buf`:
/// copies up to `cap` bytes and returns the value's full length (call with `cap` 0 to learn
/// it; `buf` may then be NULL), or a negative error as for `aloop_pg_result_get_int64`.
#[no_mangle]
pub extern "C" fn aloop_pg_result_get_bytea(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
    buf: *mut c_void,
    cap: usize,
) -> isize {
    guard(|| {
        if buf.is_null() && cap > 0 {
            return Error::NULL_ARG.code() as isize;
        }
        let got = with_ok(r, |x| {
            x.get_bytea(row, col).map(|v| {
                let n = v.len().min(cap);
                if n > 0 {
                    // SAFETY: buf has cap >= n writable bytes.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf.cast::<u8>(), n) };
                }
                v.len()
            })
        });
        match got {
            Ok(Ok(n)) => n as isize,
            Ok(Err(e)) => code(e) as isize,
            Err(e) => e.code() as isize,
        }
    })
}
