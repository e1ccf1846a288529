//! Hand-written declarations of llhttp 9.3.0's C API (`llhttp.h`), for the parts asyncloop uses.
//!
//! The struct layouts are checked against the C header by `tests/layout.rs`, which compiles a
//! small C file that reports `sizeof`/`offsetof`.
#![no_std]
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_void};

/// `llhttp_t` (`struct llhttp__internal_s`). Fields starting with `_` are private to llhttp.
#[repr(C)]
#[derive(Debug)]
pub struct llhttp_t {
    pub _index: i32,
    pub _span_pos0: *mut c_void,
    pub _span_cb0: *mut c_void,
    pub error: i32,
    pub reason: *const c_char,
    pub error_pos: *const c_char,
    pub data: *mut c_void,
    pub _current: *mut c_void,
    pub content_length: u64,
    pub type_: u8,
    pub method: u8,
    pub http_major: u8,
    pub http_minor: u8,
    pub header_state: u8,
    pub lenient_flags: u16,
    pub upgrade: u8,
    pub finish: u8,
    pub flags: u16,
    pub status_code: u16,
    pub initial_message_completed: u8,
    pub settings: *mut c_void,
}

/// Notification callback: 0 to proceed, -1 for an error, `HPE_PAUSED` to pause.
pub type llhttp_cb = Option<unsafe extern "C" fn(*mut llhttp_t) -> c_int>;
/// Data callback: a span of the buffer passed to `llhttp_execute`.
pub type llhttp_data_cb =
    Option<unsafe extern "C" fn(*mut llhttp_t, *const c_char, usize) -> c_int>;

/// `llhttp_settings_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct llhttp_settings_t {
    pub on_message_begin: llhttp_cb,
    pub on_protocol: llhttp_data_cb,
    pub on_url: llhttp_data_cb,
    pub on_status: llhttp_data_cb,
    pub on_method: llhttp_data_cb,
    pub on_version: llhttp_data_cb,
    pub on_header_field: llhttp_data_cb,
    pub on_header_value: llhttp_data_cb,
    pub on_chunk_extension_name: llhttp_data_cb,
    pub on_chunk_extension_value: llhttp_data_cb,
    pub on_headers_complete: llhttp_cb,
    pub on_body: llhttp_data_cb,
    pub on_message_complete: llhttp_cb,
    pub on_protocol_complete: llhttp_cb,
    pub on_url_complete: llhttp_cb,
    pub on_status_complete: llhttp_cb,
    pub on_method_complete: llhttp_cb,
    pub on_version_complete: llhttp_cb,
    pub on_header_field_complete: llhttp_cb,
    pub on_header_value_complete: llhttp_cb,
    pub on_chunk_extension_name_complete: llhttp_cb,
    pub on_chunk_extension_value_complete: llhttp_cb,
    pub on_chunk_header: llhttp_cb,
    pub on_chunk_complete: llhttp_cb,
    pub on_reset: llhttp_cb,
}

/// `llhttp_type_t`.
pub type llhttp_type_t = c_int;
pub const HTTP_BOTH: llhttp_type_t = 0;
pub const HTTP_REQUEST: llhttp_type_t = 1;
pub const HTTP_RESPONSE: llhttp_type_t = 2;

/// `llhttp_errno_t`.
pub type llhttp_errno_t = c_int;
pub const HPE_OK: llhttp_errno_t = 0;
pub const HPE_INTERNAL: llhttp_errno_t = 1;
pub const HPE_STRICT: llhttp_errno_t = 2;
pub const HPE_LF_EXPECTED: llhttp_errno_t = 3;
pub const HPE_UNEXPECTED_CONTENT_LENGTH: llhttp_errno_t = 4;
pub const HPE_CLOSED_CONNECTION: llhttp_errno_t = 5;
pub const HPE_INVALID_METHOD: llhttp_errno_t = 6;
pub const HPE_INVALID_URL: llhttp_errno_t = 7;
pub const HPE_INVALID_CONSTANT: llhttp_errno_t = 8;
pub const HPE_INVALID_VERSION: llhttp_errno_t = 9;
pub const HPE_INVALID_HEADER_TOKEN: llhttp_errno_t = 10;
pub const HPE_INVALID_CONTENT_LENGTH: llhttp_errno_t = 11;
pub const HPE_INVALID_CHUNK_SIZE: llhttp_errno_t = 12;
pub const HPE_INVALID_STATUS: llhttp_errno_t = 13;
pub const HPE_INVALID_EOF_STATE: llhttp_errno_t = 14;
pub const HPE_INVALID_TRANSFER_ENCODING: llhttp_errno_t = 15;
pub const HPE_CB_MESSAGE_BEGIN: llhttp_errno_t = 16;
pub const HPE_CB_HEADERS_COMPLETE: llhttp_errno_t = 17;
pub const HPE_CB_MESSAGE_COMPLETE: llhttp_errno_t = 18;
pub const HPE_CB_CHUNK_HEADER: llhttp_errno_t = 19;
pub const HPE_CB_CHUNK_COMPLETE: llhttp_errno_t = 20;
pub const HPE_PAUSED: llhttp_errno_t = 21;
pub const HPE_PAUSED_UPGRADE: llhttp_errno_t = 22;
pub const HPE_PAUSED_H2_UPGRADE: llhttp_errno_t = 23;
pub const HPE_USER: llhttp_errno_t = 24;
pub const HPE_CR_EXPECTED: llhttp_errno_t = 25;
pub const HPE_UNEXPECTED_SPACE: llhttp_errno_t = 30;

/// `enum llhttp_flags`.
pub const F_CONNECTION_KEEP_ALIVE: u16 = 0x1;
pub const F_CONNECTION_CLOSE: u16 = 0x2;
pub const F_CONNECTION_UPGRADE: u16 = 0x4;
pub const F_CHUNKED: u16 = 0x8;
pub const F_UPGRADE: u16 = 0x10;
pub const F_CONTENT_LENGTH: u16 = 0x20;
pub const F_SKIPBODY: u16 = 0x40;
pub const F_TRAILING: u16 = 0x80;
pub const F_TRANSFER_ENCODING: u16 = 0x200;

extern "C" {
    pub fn llhttp_init(
        parser: *mut llhttp_t,
        type_: llhttp_type_t,
        settings: *const llhttp_settings_t,
    );
    pub fn llhttp_reset(parser: *mut llhttp_t);
    pub fn llhttp_settings_init(settings: *mut llhttp_settings_t);
    pub fn llhttp_execute(parser: *mut llhttp_t, data: *const c_char, len: usize)
        -> llhttp_errno_t;
    pub fn llhttp_finish(parser: *mut llhttp_t) -> llhttp_errno_t;
    pub fn llhttp_message_needs_eof(parser: *const llhttp_t) -> c_int;
    pub fn llhttp_should_keep_alive(parser: *const llhttp_t) -> c_int;
    pub fn llhttp_pause(parser: *mut llhttp_t);
    pub fn llhttp_resume(parser: *mut llhttp_t);
    pub fn llhttp_get_errno(parser: *const llhttp_t) -> llhttp_errno_t;
    pub fn llhttp_get_error_reason(parser: *const llhttp_t) -> *const c_char;
    pub fn llhttp_set_error_reason(parser: *mut llhttp_t, reason: *const c_char);
    pub fn llhttp_get_error_pos(parser: *const llhttp_t) -> *const c_char;
    pub fn llhttp_errno_name(err: llhttp_errno_t) -> *const c_char;
    pub fn llhttp_method_name(method: u8) -> *const c_char;
    pub fn llhttp_get_method(parser: *mut llhttp_t) -> u8;
    pub fn llhttp_get_status_code(parser: *mut llhttp_t) -> c_int;
    pub fn llhttp_get_http_major(parser: *mut llhttp_t) -> u8;
    pub fn llhttp_get_http_minor(parser: *mut llhttp_t) -> u8;
    pub fn llhttp_set_lenient_headers(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_chunked_length(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_keep_alive(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_transfer_encoding(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_version(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_data_after_close(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_optional_lf_after_cr(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_optional_cr_before_lf(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_optional_crlf_after_chunk(parser: *mut llhttp_t, enabled: c_int);
    pub fn llhttp_set_lenient_spaces_after_chunk_size(parser: *mut llhttp_t, enabled: c_int);
}
