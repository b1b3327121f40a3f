//! A test CA and a server certificate for 127.0.0.1 and localhost that it signed, made with
//! `openssl` when a test first needs them: no private key is kept in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` (P-256, valid two days) into `dir`.
pub fn make_tls(dir: &Path) -> TestTls {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        "CA",
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca)
            .args(["-days", "2", "-subj", "/CN=mpesa-gateway test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    openssl(
        "server",
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]),
    );
    TestTls { ca, cert, key }
}

fn openssl(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| {
        panic!("running openssl ({what}): {e}; the TLS tests need it: apt-get install -y openssl")
    });
    assert!(
        out.status.success(),
        "openssl ({what}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
