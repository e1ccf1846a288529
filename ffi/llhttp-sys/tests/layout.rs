//! The hand-written struct layouts must match llhttp.h: a C program prints sizeof/offsetof of
//! every field, and the same numbers are computed here.
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use llhttp_sys::{llhttp_settings_t, llhttp_t};

fn header_dir() -> PathBuf {
    match std::env::var_os("LLHTTP_SRC_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../third_party/llhttp-9.3.0/lib")
        }
    }
}

macro_rules! rust_layout {
    ($t:ty, $cname:literal; $($f:ident => $cf:literal),* $(,)?) => {{
        let mut v = vec![format!("sizeof {} {}", $cname, size_of::<$t>())];
        $( v.push(format!("offsetof {} {} {}", $cname, $cf, offset_of!($t, $f))); )*
        v
    }};
}

#[test]
fn struct_layouts_match_the_c_header() {
    let mut rust = rust_layout!(llhttp_t, "llhttp_t";
        _index => "_index", _span_pos0 => "_span_pos0", _span_cb0 => "_span_cb0", error => "error",
        reason => "reason", error_pos => "error_pos", data => "data", _current => "_current",
        content_length => "content_length", type_ => "type", method => "method",
        http_major => "http_major", http_minor => "http_minor", header_state => "header_state",
        lenient_flags => "lenient_flags", upgrade => "upgrade", finish => "finish", flags => "flags",
        status_code => "status_code", initial_message_completed => "initial_message_completed",
        settings => "settings");
    rust.extend(rust_layout!(llhttp_settings_t, "llhttp_settings_t";
        on_message_begin => "on_message_begin", on_protocol => "on_protocol", on_url => "on_url",
        on_status => "on_status", on_method => "on_method", on_version => "on_version",
        on_header_field => "on_header_field", on_header_value => "on_header_value",
        on_chunk_extension_name => "on_chunk_extension_name",
        on_chunk_extension_value => "on_chunk_extension_value",
        on_headers_complete => "on_headers_complete", on_body => "on_body",
        on_message_complete => "on_message_complete", on_protocol_complete => "on_protocol_complete",
        on_url_complete => "on_url_complete", on_status_complete => "on_status_complete",
        on_method_complete => "on_method_complete", on_version_complete => "on_version_complete",
        on_header_field_complete => "on_header_field_complete",
        on_header_value_complete => "on_header_value_complete",
        on_chunk_extension_name_complete => "on_chunk_extension_name_complete",
        on_chunk_extension_value_complete => "on_chunk_extension_value_complete",
        on_chunk_header => "on_chunk_header", on_chunk_complete => "on_chunk_complete",
        on_reset => "on_reset"));

    // Generate a C program that prints the same lines from the real header.
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"llhttp.h\"\nint main(void){\n",
    );
    for line in &rust {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] == "sizeof" {
            c += &format!("printf(\"sizeof {0} %zu\\n\", sizeof({0}));\n", parts[1]);
        } else {
            c += &format!(
                "printf(\"offsetof {0} {1} %zu\\n\", offsetof({0}, {1}));\n",
                parts[1], parts[2]
            );
        }
    }
    c += "return 0;}\n";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("llhttp_layout.c");
    let exe = dir.join("llhttp_layout");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(cc)
        .arg("-I")
        .arg(header_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(st.success(), "compiling the layout probe failed");
    let out = Command::new(&exe).output().unwrap();
    let c_lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(rust, c_lines);
}

#[test]
fn parser_runs_with_the_declared_api() {
    use llhttp_sys::*;
    // SAFETY: zeroed structs are valid inputs to llhttp_settings_init/llhttp_init, which fill them.
    unsafe {
        let mut settings: llhttp_settings_t = std::mem::zeroed();
        llhttp_settings_init(&mut settings);
        let mut p: llhttp_t = std::mem::zeroed();
        llhttp_init(&mut p, HTTP_REQUEST, &settings);
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            llhttp_execute(&mut p, req.as_ptr().cast(), req.len()),
            HPE_OK
        );
        assert_eq!(llhttp_get_http_minor(&mut p), 1);
        let bad = b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n";
        llhttp_init(&mut p, HTTP_REQUEST, &settings);
        assert_eq!(
            llhttp_execute(&mut p, bad.as_ptr().cast(), bad.len()),
            HPE_INVALID_CONTENT_LENGTH
        );
    }
}
