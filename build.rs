//! Writes `include/asyncloop.h` with cbindgen from the C API in `src/capi`. The file is
//! committed; it is rewritten only when its content changes, so a build never leaves it
//! modified unless the API changed.
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/capi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // SONAME of the shared library: libasyncloop.so.<major>.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libasyncloop.so.{major}");

    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "\n#define ALOOP_VERSION_MAJOR {}\n#define ALOOP_VERSION_MINOR {}\n#define ALOOP_VERSION_PATCH {}\n",
        major,
        std::env::var("CARGO_PKG_VERSION_MINOR").unwrap(),
        std::env::var("CARGO_PKG_VERSION_PATCH").unwrap(),
    ));
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => panic!("cbindgen: {e}"),
    };
    let mut raw = Vec::new();
    bindings.write(&mut raw);
    let out = parenthesize_negative_defines(&String::from_utf8(raw).unwrap()).into_bytes();
    let path = crate_dir.join("include/asyncloop.h");
    if std::fs::read(&path).ok().as_deref() != Some(&out[..]) {
        std::fs::write(&path, &out).expect("write include/asyncloop.h");
    }
}

/// `#define X -1` misparses in `a-X`; make it `#define X (-1)`.
fn parenthesize_negative_defines(header: &str) -> String {
    header
        .lines()
        .map(|line| match line.strip_prefix("#define ") {
            Some(rest) => match rest.split_once(' ') {
                Some((name, value))
                    if value.starts_with('-') && value[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!("#define {name} ({value})")
                }
                _ => line.to_string(),
            },
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
