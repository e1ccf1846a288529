//! Typed access to a result: columns by name, their type OIDs and formats, and getters that
//! decode a value in either format (text, or binary when the query asked for it) and say why
//! they could not: SQL NULL, a type that is not the one asked for, or a malformed value.

use std::borrow::Cow;

use pq_sys as pq;

use super::result::PgResult;
use crate::error::Error;

/// Type OIDs of PostgreSQL's built-in types (`pg_type.oid`), as `column_type` reports them.
/// (The C header has its own `ALOOP_PG_OID_*`.)
///
/// cbindgen:ignore
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const NUMERIC: u32 = 1700;
}

/// Why a typed getter returned no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueError {
    /// No such row or column.
    OutOfRange,
    /// The value is SQL NULL.
    Null,
    /// The column's type is not one the getter reads.
    Type { oid: u32, wanted: &'static str },
    /// The value does not decode as that type, or does not fit it.
    Malformed { wanted: &'static str },
}

impl ValueError {
    /// The library code: `NOT_FOUND`, `PG_NULL` or `PG_TYPE`.
    pub fn code(&self) -> Error {
        match self {
            ValueError::OutOfRange => Error::NOT_FOUND,
            ValueError::Null => Error::PG_NULL,
            ValueError::Type { .. } | ValueError::Malformed { .. } => Error::PG_TYPE,
        }
    }
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::OutOfRange => write!(f, "no such row or column"),
            ValueError::Null => write!(f, "the value is NULL"),
            ValueError::Type { oid, wanted } => {
                write!(f, "a column of type OID {oid} cannot be read as {wanted}")
            }
            ValueError::Malformed { wanted } => write!(f, "the value is not a valid {wanted}"),
        }
    }
}

impl std::error::Error for ValueError {}

type Value<T> = Result<T, ValueError>;

fn text_like(oid: u32) -> bool {
    matches!(
        oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN | oid::JSON | oid::XML
    )
}

impl PgResult {
    /// The first column named exactly `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        (0..self.columns()).find(|&c| self.column_name(c) == Some(name))
    }

    /// The type OID of column `col` (see `oid`).
    pub fn column_type(&self, col: usize) -> Option<u32> {
        // SAFETY: col is in range of this live result.
        (col < self.columns()).then(|| unsafe { pq::PQftype(self.res, col as i32) })
    }

    /// Whether column `col` came in binary format.
    pub fn is_binary(&self, col: usize) -> bool {
        // SAFETY: col is in range of this live result.
        col < self.columns() && unsafe { pq::PQfformat(self.res, col as i32) } == 1
    }

    /// Whether the value at (`row`, `col`) is SQL NULL (false out of range).
    pub fn is_null(&self, row: usize, col: usize) -> bool {
        // SAFETY: row and col are in range of this live result.
        row < self.rows()
            && col < self.columns()
            && unsafe { pq::PQgetisnull(self.res, row as i32, col as i32) } != 0
    }

    /// The raw value, its type and format, or why there is none.
    fn raw(&self, row: usize, col: usize) -> Value<(&[u8], u32, bool)> {
        if row >= self.rows() || col >= self.columns() {
            return Err(ValueError::OutOfRange);
        }
        let v = self.value(row, col).ok_or(ValueError::Null)?;
        Ok((v, self.column_type(col).unwrap_or(0), self.is_binary(col)))
    }

    /// An `int2`, `int4`, `int8` or `oid` value.
    pub fn get_i64(&self, row: usize, col: usize) -> Value<i64> {
        const W: &str = "an integer";
        let (v, oid, binary) = self.raw(row, col)?;
        if !matches!(oid, oid::INT2 | oid::INT4 | oid::INT8 | oid::OID) {
            return Err(ValueError::Type { oid, wanted: W });
        }
        let bad = ValueError::Malformed { wanted: W };
        if !binary {
            return std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(bad);
        }
        match (oid, v.len()) {
            (oid::INT2, 2) => Ok(i16::from_be_bytes([v[0], v[1]]) as i64),
            (oid::INT4, 4) => Ok(i32::from_be_bytes(v.try_into().unwrap()) as i64),
            (oid::OID, 4) => Ok(u32::from_be_bytes(v.try_into().unwrap()) as i64),
            (oid::INT8, 8) => Ok(i64::from_be_bytes(v.try_into().unwrap())),
            _ => Err(bad),
        }
    }

    /// A `float4`, `float8` or `numeric` value, or an integer one.
    pub fn get_f64(&self, row: usize, col: usize) -> Value<f64> {
        const W: &str = "a floating-point number";
        let (v, oid, binary) = self.raw(row, col)?;
        let bad = ValueError::Malformed { wanted: W };
        match oid {
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
                return self.get_i64(row, col).map(|i| i as f64)
            }
            oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => {}
            _ => return Err(ValueError::Type { oid, wanted: W }),
        }
        if !binary {
            return std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(bad);
        }
        match (oid, v.len()) {
            (oid::FLOAT4, 4) => Ok(f32::from_be_bytes(v.try_into().unwrap()) as f64),
            (oid::FLOAT8, 8) => Ok(f64::from_be_bytes(v.try_into().unwrap())),
            (oid::NUMERIC, _) => numeric_to_f64(v).ok_or(bad),
            _ => Err(bad),
        }
    }

    /// A `bool` value.
    pub fn get_bool(&self, row: usize, col: usize) -> Value<bool> {
        const W: &str = "a boolean";
        let (v, oid, binary) = self.raw(row, col)?;
        if oid != oid::BOOL {
            return Err(ValueError::Type { oid, wanted: W });
        }
        match (binary, v) {
            (false, b"t") | (true, [1]) => Ok(true),
            (false, b"f") | (true, [0]) => Ok(false),
            _ => Err(ValueError::Malformed { wanted: W }),
        }
    }

    /// A value as text: any column in text format; in binary format, the text types only.
    pub fn get_text(&self, row: usize, col: usize) -> Value<&str> {
        const W: &str = "text";
        let (v, oid, binary) = self.raw(row, col)?;
        if binary && !text_like(oid) {
            return Err(ValueError::Type { oid, wanted: W });
        }
        std::str::from_utf8(v).map_err(|_| ValueError::Malformed { wanted: W })
    }

    /// A `bytea` value, decoded (borrowed as is from a binary result).
    pub fn get_bytea(&self, row: usize, col: usize) -> Value<Cow<'_, [u8]>> {
        const W: &str = "bytea";
        let (v, oid, binary) = self.raw(row, col)?;
        if oid != oid::BYTEA {
            return Err(ValueError::Type { oid, wanted: W });
        }
        if binary {
            return Ok(Cow::Borrowed(v));
        }
        decode_bytea_text(v)
            .map(Cow::Owned)
            .ok_or(ValueError::Malformed { wanted: W })
    }
}

/// bytea's text form: `\x` and hex digits (the default), or the old escape format.
fn decode_bytea_text(v: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = v.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        return hex
            .chunks(2)
            .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
            .collect();
    }
    let c = std::ffi::CString::new(v).ok()?;
    let mut n: usize = 0;
    // SAFETY: c is a NUL-terminated escape-format string; libpq returns a malloc'd buffer of n
    // bytes (or NULL), freed below.
    unsafe {
        let p = pq::PQunescapeBytea(c.as_ptr().cast(), &mut n);
        if p.is_null() {
            return None;
        }
        let out = std::slice::from_raw_parts(p, n).to_vec();
        pq::PQfreemem(p.cast());
        Some(out)
    }
}

/// `numeric`'s binary form: digit count, weight, sign, display scale (each 16 bits), then
/// base-10000 digits, the first one at 10000^weight.
fn numeric_to_f64(v: &[u8]) -> Option<f64> {
    let word = |i: usize| v.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    match sign {
        0xC000 => return Some(f64::NAN),
        0xD000 => return Some(f64::INFINITY),
        0xF000 => return Some(f64::NEG_INFINITY),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let mut x = 0f64;
    for i in 0..ndigits {
        let d = word(8 + 2 * i)? as f64;
        x += d * 10000f64.powi(weight - i as i32);
    }
    Some(if sign == 0x4000 { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_text_forms() {
        assert_eq!(decode_bytea_text(b"\\x00ff41"), Some(vec![0, 255, b'A']));
        assert_eq!(decode_bytea_text(b"\\x0"), None);
        assert_eq!(decode_bytea_text(b"\\xzz"), None);
        assert_eq!(decode_bytea_text(b"a\\000b"), Some(vec![b'a', 0, b'b']));
    }

    #[test]
    fn numeric_binary() {
        // 12345.678 = digits [1, 2345, 6780], weight 1, positive, dscale 3.
        let v = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert!((numeric_to_f64(&v).unwrap() - 12345.678).abs() < 1e-9);
        let neg = [0, 1, 0xff, 0xff, 0x40, 0, 0, 1, 0x13, 0x88]; // -0.5
        assert_eq!(numeric_to_f64(&neg), Some(-0.5));
        assert!(numeric_to_f64(&[0xc0]).is_none());
    }
}
