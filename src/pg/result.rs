//! Query results and errors. A `PgResult` owns a libpq `PGresult` (cleared on drop); values are
//! borrowed from it. Typed access (by column name, type OIDs, getters) is in `value.rs`.

use std::ffi::CStr;

use pq_sys as pq;

use crate::error::Error;

/// A successful result: rows and columns of values (text, or binary when asked for), or a
/// command tag.
pub struct PgResult {
    pub(super) res: *mut pq::PGresult,
}

impl PgResult {
    /// Takes ownership of `res` (non-NULL).
    pub(crate) fn from_raw(res: *mut pq::PGresult) -> PgResult {
        debug_assert!(!res.is_null());
        PgResult { res }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        // SAFETY: res is a live PGresult owned by self.
        unsafe { pq::PQntuples(self.res) as usize }
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        // SAFETY: as above.
        unsafe { pq::PQnfields(self.res) as usize }
    }

    /// Name of column `col`.
    pub fn column_name(&self, col: usize) -> Option<&str> {
        if col >= self.columns() {
            return None;
        }
        // SAFETY: col is in range; libpq returns a string owned by the result.
        let p = unsafe { pq::PQfname(self.res, col as i32) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap_or(""))
    }

    /// Value at (`row`, `col`) as its bytes (text, or the binary form for a binary result);
    /// `None` for SQL NULL or out of range.
    pub fn value(&self, row: usize, col: usize) -> Option<&[u8]> {
        if row >= self.rows() || col >= self.columns() {
            return None;
        }
        let (r, c) = (row as i32, col as i32);
        // SAFETY: row and col are in range; the value lives as long as the result.
        unsafe {
            if pq::PQgetisnull(self.res, r, c) != 0 {
                return None;
            }
            let p = pq::PQgetvalue(self.res, r, c);
            let n = pq::PQgetlength(self.res, r, c) as usize;
            Some(std::slice::from_raw_parts(p as *const u8, n))
        }
    }

    /// Value at (`row`, `col`) as libpq's NUL-terminated bytes; NULL for SQL NULL or out of range.
    pub(crate) fn c_value(&self, row: usize, col: usize) -> *const std::ffi::c_char {
        match self.value(row, col) {
            Some(v) => v.as_ptr().cast(),
            None => std::ptr::null(),
        }
    }

    /// Value as UTF-8 text, whatever its type (`get_text` checks the type).
    pub fn text(&self, row: usize, col: usize) -> Option<&str> {
        self.value(row, col)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Value as an integer: text parsed whatever its type, binary integers decoded
    /// (`get_i64` checks the type and says why not).
    pub fn int(&self, row: usize, col: usize) -> Option<i64> {
        if self.is_binary(col) {
            return self.get_i64(row, col).ok();
        }
        self.text(row, col).and_then(|t| t.parse().ok())
    }

    /// The command tag (`"INSERT 0 1"`, `"COMMIT"`, `"ROLLBACK"`, ...).
    pub fn command_tag(&self) -> &str {
        // SAFETY: live result; PQcmdStatus returns a string owned by it.
        unsafe { CStr::from_ptr(pq::PQcmdStatus(self.res)) }
            .to_str()
            .unwrap_or("")
    }

    /// Rows affected by INSERT/UPDATE/DELETE (0 for others).
    pub fn affected_rows(&self) -> u64 {
        // SAFETY: live result; PQcmdTuples returns a string owned by it ("" when none).
        let s = unsafe { CStr::from_ptr(pq::PQcmdTuples(self.res)) };
        s.to_str().ok().and_then(|t| t.parse().ok()).unwrap_or(0)
    }
}

impl std::fmt::Debug for PgResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgResult")
            .field("tag", &self.command_tag())
            .field("rows", &self.rows())
            .field("columns", &self.columns())
            .finish()
    }
}

impl Drop for PgResult {
    fn drop(&mut self) {
        // SAFETY: we own the result and clear it once.
        unsafe { pq::PQclear(self.res) };
    }
}

/// Why a query failed: the library code, the SQLSTATE when the server reported one, and a
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgError {
    pub code: Error,
    pub sqlstate: String,
    pub message: String,
}

impl PgError {
    pub(crate) fn new(code: Error, message: impl Into<String>) -> PgError {
        PgError {
            code,
            sqlstate: String::new(),
            message: message.into(),
        }
    }

    /// The server's error in `res`.
    pub(crate) fn from_result(res: *mut pq::PGresult) -> PgError {
        // SAFETY: res is a live result; the fields are strings owned by it (or NULL).
        let field = |f: u8| unsafe {
            let p = pq::PQresultErrorField(res, f as i32);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        PgError {
            code: Error::PG_QUERY,
            sqlstate: field(pq::PG_DIAG_SQLSTATE),
            message: field(pq::PG_DIAG_MESSAGE_PRIMARY),
        }
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sqlstate.is_empty() {
            write!(f, "{}: {}", self.code, self.message)
        } else {
            write!(f, "{} ({}): {}", self.code, self.sqlstate, self.message)
        }
    }
}
