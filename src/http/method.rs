//! llhttp's method codes and names: the request parser writes a request's method from its code,
//! the router matches routes by code.

use llhttp_sys as ll;

/// The name of llhttp's method `m` (the common ones without a call into llhttp).
fn method_name(m: u8) -> &'static [u8] {
    match m {
        0 => b"DELETE",
        1 => b"GET",
        2 => b"HEAD",
        3 => b"POST",
        4 => b"PUT",
        // SAFETY: llhttp_method_name returns a static C string for every method value.
        _ => unsafe { std::ffi::CStr::from_ptr(ll::llhttp_method_name(m)) }.to_bytes(),
    }
}

/// Appends the name of llhttp's method `m`: the common ones as copies of a constant length,
/// which the compiler writes inline (no `memcpy` call for three bytes).
pub(crate) fn push_method(arena: &mut Vec<u8>, m: u8) {
    match m {
        0 => arena.extend_from_slice(b"DELETE"),
        1 => arena.extend_from_slice(b"GET"),
        2 => arena.extend_from_slice(b"HEAD"),
        3 => arena.extend_from_slice(b"POST"),
        4 => arena.extend_from_slice(b"PUT"),
        _ => arena.extend_from_slice(method_name(m)),
    }
}

/// llhttp's code for the method `name` (None for a method llhttp does not parse).
pub(crate) fn method_code(name: &str) -> Option<u8> {
    // llhttp's methods are the codes 0 to 46 (HTTP_ALL_METHOD_MAP).
    (0..=46u8).find(|&m| method_name(m) == name.as_bytes())
}
