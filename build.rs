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
    config.after_includes = Some(version_macros());
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

/// The version macros at the top of the header, from the crate's version: the three numbers,
/// `ALOOP_VERSION_HEX` (0xMMmmpp) and `ALOOP_VERSION_AT_LEAST`.
fn version_macros() -> String {
    let part = |name: &str| -> u32 {
        let v = std::env::var(name).unwrap();
        let n: u32 = v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"));
        assert!(
            n < 256,
            "{name}={n}: ALOOP_VERSION_HEX has one byte per part"
        );
        n
    };
    let (major, minor, patch) = (
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    let hex = (major << 16) | (minor << 8) | patch;
    format!(
        r#"
/** Major version of this header; `aloop_version()` gives the library's at run time. */
#define ALOOP_VERSION_MAJOR {major}
/** Minor version of this header. */
#define ALOOP_VERSION_MINOR {minor}
/** Patch version of this header. */
#define ALOOP_VERSION_PATCH {patch}
/**
 * This header's version as one number, 0xMMmmpp: major, minor and patch one byte each (1.2.3
 * is 0x010203), so that versions compare with `<` and `>`.
 */
#define ALOOP_VERSION_HEX 0x{hex:06x}
/**
 * Non-zero when this header is version `major.minor.patch` or later, in `#if` too:
 * `#if ALOOP_VERSION_AT_LEAST(0, 2, 0)`.
 */
#define ALOOP_VERSION_AT_LEAST(major, minor, patch) \
  (ALOOP_VERSION_HEX >= (((major) << 16) | ((minor) << 8) | (patch)))
"#
    )
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
