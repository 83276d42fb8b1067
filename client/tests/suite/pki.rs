//! Throwaway certificates for TLS tests, made with the `openssl` CLI:
//! shared by the client suite and kvctl's tests (included there by path).

use std::path::Path;
use std::process::Command;

/// Runs `openssl` in `dir` with the space-separated `args`.
pub fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A P-256 CA `<name>-ca.pem`/`<name>-ca.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 {EC_KEY} -days 2 -subj /CN={name}-test-CA \
             -keyout {name}-ca.key -out {name}-ca.pem \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

/// A leaf `<name>.pem`/`<name>.key` signed by CA `ca`, valid for
/// 127.0.0.1 and localhost, for servers and clients.
pub fn make_leaf(dir: &Path, ca: &str, name: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!("req {EC_KEY} -subj /CN={name} -keyout {name}.key -out {name}.csr"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}-ca.pem -CAkey {ca}-ca.key -CAcreateserial \
             -days 2 -extfile {name}.ext -out {name}.pem"
        ),
    );
}
