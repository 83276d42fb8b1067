//! Unit tests for loading, checking and naming certificates, on files the
//! `openssl` CLI makes in a temporary directory.

use std::path::Path;
use std::process::Command;

use super::*;

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed P-256 certificate `<name>.pem`/`<name>.key` with `subj`.
fn self_signed(dir: &Path, name: &str, subj: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
             -subj {subj} -keyout {name}.key -out {name}.pem"
        ),
    );
}

fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
    TlsFiles::from_flags(
        CLIENT_FLAGS,
        Some(&dir.join(cert)),
        Some(&dir.join(key)),
        None,
        false,
    )
    .unwrap()
    .unwrap()
}

fn der(dir: &Path, name: &str) -> Vec<u8> {
    let pem = std::fs::read(dir.join(name)).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
}

#[test]
fn common_name_is_the_subjects_last_cn() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "a", "/O=kv/CN=alice");
    assert_eq!(
        common_name(&der(dir.path(), "a.pem")).as_deref(),
        Some("alice")
    );
    self_signed(dir.path(), "b", "/CN=first/OU=x/CN=bob");
    assert_eq!(
        common_name(&der(dir.path(), "b.pem")).as_deref(),
        Some("bob")
    );
    self_signed(dir.path(), "c", "/O=no-cn");
    assert_eq!(common_name(&der(dir.path(), "c.pem")), None);
    // Truncated or garbage DER is None, never a panic.
    let a = der(dir.path(), "a.pem");
    for n in 0..a.len() {
        let _ = common_name(&a[..n]);
    }
    assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(common_name(&[]), None);
}

#[test]
fn start_errors_name_the_flag_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "a", "/CN=a");
    self_signed(d, "b", "/CN=b");
    let p = provider();
    assert!(files(d, "a.pem", "a.key").certified_key(&p).is_ok());
    assert!(files(d, "a.pem", "a.key").acceptor().is_ok());

    let e = files(d, "a.pem", "b.key").certified_key(&p).unwrap_err();
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("does not match --key-file"), "{e}");

    let e = files(d, "missing.pem", "a.key")
        .certified_key(&p)
        .unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Read {
                flag: "--cert-file",
                ..
            }
        ),
        "{e}"
    );

    // A key where the certificate should be, and the other way round.
    let e = files(d, "a.key", "a.key").certified_key(&p).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    let e = files(d, "a.pem", "a.pem").certified_key(&p).unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");

    let big = d.join("big.pem");
    std::fs::write(&big, vec![b'x'; (MAX_PEM_BYTES + 1) as usize]).unwrap();
    let e = files(d, "big.pem", "a.key").certified_key(&p).unwrap_err();
    assert!(matches!(e, TlsError::TooLarge { .. }), "{e}");
}

#[test]
fn flag_combinations() {
    let p = Path::new("x");
    let f = |cert, key, ca, auth| TlsFiles::from_flags(PEER_FLAGS, cert, key, ca, auth);
    assert!(f(None, None, None, false).unwrap().is_none());
    assert!(f(Some(p), None, None, false).is_err());
    assert!(f(None, Some(p), None, false).is_err());
    let e = f(Some(p), Some(p), None, true).unwrap_err().to_string();
    assert!(
        e.contains("--peer-client-cert-auth needs --peer-trusted-ca-file"),
        "{e}"
    );
    assert!(f(None, None, None, true).is_err());
    assert!(f(Some(p), Some(p), Some(p), true).unwrap().is_some());
}
