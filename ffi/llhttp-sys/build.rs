//! Compiles llhttp 9.3.0's C release. The sources are not committed: `scripts/fetch-llhttp.sh`
//! downloads and verifies them into `third_party/llhttp-9.3.0`; `LLHTTP_SRC_DIR` overrides the
//! folder (it must hold `llhttp.h`, `llhttp.c`, `api.c` and `http.c`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LLHTTP_SRC_DIR");
    let dir = match std::env::var_os("LLHTTP_SRC_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../../third_party/llhttp-9.3.0/lib")
        }
    };
    let files = ["llhttp.c", "api.c", "http.c"];
    for f in files.iter().chain(["llhttp.h"].iter()) {
        let p = dir.join(f);
        if !p.exists() {
            panic!(
                "llhttp-sys: {} not found. Run `scripts/fetch-llhttp.sh` (or `make deps`) to fetch \
                 llhttp 9.3.0, or set LLHTTP_SRC_DIR to a folder with its C sources.",
                p.display()
            );
        }
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let mut build = cc::Build::new();
    build.include(&dir).warnings(false).opt_level(3);
    for f in files {
        build.file(dir.join(f));
    }
    build.compile("llhttp");
    println!("cargo:include={}", dir.display());
}
