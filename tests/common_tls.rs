// Test certificates, made with the openssl command line once per test binary (never committed):
// a CA and leaf certificates signed by it (ECDSA P-256 and RSA, for localhost, 127.0.0.1 and
// ::1), a client certificate, and the bad ones: expired, self-signed, for another host, and
// signed by a CA nobody trusts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key_args(rsa: bool) -> Vec<&'static str> {
    if rsa {
        vec!["-newkey", "rsa:2048"]
    } else {
        vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    }
}

fn ca(dir: &Path, name: &str) {
    let mut a = vec!["req", "-x509", "-nodes"];
    a.extend(key_args(false));
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    a.extend(["-keyout", &key, "-out", &pem, "-subj", &subj, "-days", "30"]);
    openssl(dir, &a);
}

/// A leaf `name`.pem/.key signed by `ca`, valid `days` (negative: already expired).
fn leaf(dir: &Path, name: &str, ca: &str, san: &str, usage: &str, rsa: bool, days: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let ext = format!("{name}.ext");
    let ku = if rsa {
        "digitalSignature,keyEncipherment"
    } else {
        "digitalSignature"
    };
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage={ku}\nextendedKeyUsage={usage}\n{}",
            if san.is_empty() {
                String::new()
            } else {
                format!("subjectAltName={san}\n")
            }
        ),
    )
    .unwrap();
    let mut a = vec!["req", "-new", "-nodes"];
    a.extend(key_args(rsa));
    a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &a);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

const LOCAL: &str = "DNS:localhost,IP:127.0.0.1,IP:::1";

/// The certificates, made once per test binary.
pub fn certs() -> &'static Certs {
    static C: OnceLock<Certs> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("asyncloop-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ca(&dir, "ca");
        ca(&dir, "otherca");
        leaf(&dir, "server", "ca", LOCAL, "serverAuth", false, "30");
        leaf(&dir, "rsa", "ca", LOCAL, "serverAuth", true, "30");
        leaf(&dir, "expired", "ca", LOCAL, "serverAuth", false, "-1");
        leaf(
            &dir,
            "wronghost",
            "ca",
            "DNS:other.example",
            "serverAuth",
            false,
            "30",
        );
        leaf(
            &dir,
            "untrusted",
            "otherca",
            LOCAL,
            "serverAuth",
            false,
            "30",
        );
        leaf(&dir, "client", "ca", "", "clientAuth", false, "30");
        leaf(
            &dir,
            "otherclient",
            "otherca",
            "",
            "clientAuth",
            false,
            "30",
        );
        // Self-signed, as an end-entity certificate (CA:FALSE), from its own key.
        std::fs::write(
            dir.join("selfsigned.ext"),
            format!(
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName={LOCAL}\n"
            ),
        )
        .unwrap();
        let mut a = vec!["req", "-new", "-nodes"];
        a.extend(key_args(false));
        a.extend([
            "-keyout",
            "selfsigned.key",
            "-out",
            "selfsigned.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&dir, &a);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "selfsigned.csr",
                "-signkey",
                "selfsigned.key",
                "-days",
                "30",
                "-extfile",
                "selfsigned.ext",
                "-out",
                "selfsigned.pem",
            ],
        );
        Certs { dir }
    })
}
