//! JWT tokens (etcd's server/auth/jwt.go and options.go): `--auth-token
//! jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG,ttl=DURATION`. A token is
//! signed, not stored: any member holding the key verifies it, and it
//! carries the user and the auth revision it was issued at, so a permission
//! change since makes it "revision of auth store is old" (etcd's rule).
//! Tokens are not renewed by use; they expire `ttl` after issue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{self as sig, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};

use super::jwt_es512::Es512;

/// etcd's jwt DefaultTTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Key files larger than this are refused before they are read.
const MAX_KEY_BYTES: u64 = 1 << 20;

/// Why `--auth-token jwt,...` was refused, with etcd's texts: an option
/// that is not `key=value`, repeated, or fails to load (bad ttl, unreadable
/// file, unknown sign-method) is "invalid auth options"; key problems are
/// reported as themselves.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("auth: invalid auth options")]
    InvalidOptions,
    #[error("auth: invalid auth options (problem loading JWT options: {0})")]
    Loading(Box<JwtError>),
    #[error("auth: invalid auth signature method")]
    InvalidMethod,
    #[error("auth: missing key data")]
    MissingKey,
    #[error("auth: public and private keys don't match")]
    KeyMismatch,
    #[error("time: invalid duration {0:?}")]
    Duration(String),
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
}

/// The claims etcd writes (and reads back): who, at which auth revision,
/// until when (Unix seconds).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub username: String,
    pub revision: u64,
    pub exp: u64,
}

/// A member's JWT signer and verifier.
pub struct JwtTokens {
    ttl: Duration,
    keys: Keys,
}

/// Who signs and verifies: the jsonwebtoken crate, or kvd's own ES512
/// (P-521, which that crate lacks).
enum Keys {
    Lib {
        alg: Algorithm,
        /// None: verify-only (only pub-key given), as etcd allows.
        sign: Option<EncodingKey>,
        verify: DecodingKey,
    },
    Es512(Box<Es512>),
}

/// Parses a Go duration ("10m", "1h30m", "1.5s", "300ms", "0").
pub fn parse_go_duration(s: &str) -> Result<Duration, JwtError> {
    let bad = || JwtError::Duration(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += num * scale;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn read_key(path: &str) -> Result<Vec<u8>, JwtError> {
    let err = |reason: String| JwtError::Key {
        path: path.to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_KEY_BYTES {
        return Err(err(format!("larger than {MAX_KEY_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// etcd (Go's x509) also takes SEC1 "EC PRIVATE KEY" files, the form
/// `openssl ecparam -genkey` writes; jsonwebtoken and ring take PKCS#8 only,
/// so such a key is re-encoded as PKCS#8. Anything else passes unchanged.
fn ec_as_pkcs8(alg: Algorithm, pem: Vec<u8>, path: &str) -> Result<Vec<u8>, JwtError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    if !matches!(
        PrivateKeyDer::from_pem_slice(&pem),
        Ok(PrivateKeyDer::Sec1(_))
    ) {
        return Ok(pem);
    }
    let err = |reason: String| JwtError::Key {
        path: path.to_string(),
        reason,
    };
    let text = std::str::from_utf8(&pem).map_err(|e| err(e.to_string()))?;
    let pkcs8 = match alg {
        Algorithm::ES256 => p256::SecretKey::from_sec1_pem(text)
            .map_err(|e| err(format!("P-256 SEC1 key: {e}")))?
            .to_pkcs8_pem(LineEnding::LF),
        Algorithm::ES384 => p384::SecretKey::from_sec1_pem(text)
            .map_err(|e| err(format!("P-384 SEC1 key: {e}")))?
            .to_pkcs8_pem(LineEnding::LF),
        _ => return Ok(pem),
    }
    .map_err(|e| err(e.to_string()))?;
    Ok(pkcs8.as_bytes().to_vec())
}

fn algorithm(name: &str) -> Result<Algorithm, JwtError> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return Err(JwtError::InvalidMethod),
    })
}

enum Family {
    Rsa,
    Ec,
    Ed,
    Hmac,
}

fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
        HS256 | HS384 | HS512 => Family::Hmac,
    }
}

/// The public half of a private key, for verifying with priv-key alone.
fn public_of(alg: Algorithm, pem: &[u8], path: &str) -> Result<DecodingKey, JwtError> {
    let err = |reason: &str| JwtError::Key {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| err(&e.to_string()))?;
    let rng = ring::rand::SystemRandom::new();
    Ok(match (family(alg), &der) {
        (Family::Rsa, PrivateKeyDer::Pkcs1(k)) => {
            let kp =
                sig::RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|e| err(&e.to_string()))?;
            DecodingKey::from_rsa_der(kp.public_key().as_ref())
        }
        (Family::Rsa, PrivateKeyDer::Pkcs8(k)) => {
            let kp = sig::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                .map_err(|e| err(&e.to_string()))?;
            DecodingKey::from_rsa_der(kp.public_key().as_ref())
        }
        (Family::Ec, PrivateKeyDer::Pkcs8(k)) => {
            let ring_alg = if alg == Algorithm::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let kp = sig::EcdsaKeyPair::from_pkcs8(ring_alg, k.secret_pkcs8_der(), &rng)
                .map_err(|e| err(&e.to_string()))?;
            DecodingKey::from_ec_der(kp.public_key().as_ref())
        }
        (Family::Ed, PrivateKeyDer::Pkcs8(k)) => {
            let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.secret_pkcs8_der())
                .map_err(|e| err(&e.to_string()))?;
            DecodingKey::from_ed_der(kp.public_key().as_ref())
        }
        _ => return Err(err("private key must be PKCS#8 (PKCS#1 also for RSA)")),
    })
}

impl JwtTokens {
    /// Parses the options after `jwt,` in --auth-token (etcd's syntax and
    /// defaults: ttl 5m, sign-method required, at least one key; unknown
    /// options are only warned about, as etcd does).
    pub fn from_options(opts: &[&str]) -> Result<JwtTokens, JwtError> {
        let (mut pub_key, mut priv_key, mut method, mut ttl) = (None, None, None, None);
        let mut seen = std::collections::HashSet::new();
        for o in opts {
            let (k, v) = o.split_once('=').ok_or(JwtError::InvalidOptions)?;
            if v.contains('=') || !seen.insert(k) {
                return Err(JwtError::InvalidOptions);
            }
            let slot = match k {
                "pub-key" => &mut pub_key,
                "priv-key" => &mut priv_key,
                "sign-method" => &mut method,
                "ttl" => &mut ttl,
                _ => {
                    tracing::warn!(key = k, "unknown JWT option in --auth-token");
                    continue;
                }
            };
            *slot = Some(v).filter(|v| !v.is_empty());
        }
        let loading = |e| JwtError::Loading(Box::new(e));
        let ttl = match ttl {
            Some(t) => parse_go_duration(t).map_err(loading)?,
            None => DEFAULT_TTL,
        };
        let pub_pem = pub_key.map(read_key).transpose().map_err(loading)?;
        let priv_pem = priv_key.map(read_key).transpose().map_err(loading)?;
        if method == Some("ES512") {
            let es = Es512::load(
                pub_key.zip(pub_pem.as_deref()),
                priv_key.zip(priv_pem.as_deref()),
            )?;
            return JwtTokens::checked(ttl, Keys::Es512(Box::new(es)));
        }
        let alg = algorithm(method.unwrap_or_default()).map_err(loading)?;
        let priv_pem = priv_pem
            .map(|p| ec_as_pkcs8(alg, p, priv_key.unwrap_or_default()))
            .transpose()?;
        let bad = |path: Option<&str>, e: jsonwebtoken::errors::Error| JwtError::Key {
            path: path.unwrap_or_default().to_string(),
            reason: e.to_string(),
        };
        if let Family::Hmac = family(alg) {
            // etcd's hmacKey: the priv-key file's bytes are the secret.
            let secret = priv_pem.ok_or(JwtError::MissingKey)?;
            let keys = Keys::Lib {
                alg,
                sign: Some(EncodingKey::from_secret(&secret)),
                verify: DecodingKey::from_secret(&secret),
            };
            return Ok(JwtTokens { ttl, keys });
        }
        let verify_pub = match &pub_pem {
            None => None,
            Some(p) => Some(
                match family(alg) {
                    Family::Rsa => DecodingKey::from_rsa_pem(p),
                    Family::Ec => DecodingKey::from_ec_pem(p),
                    _ => DecodingKey::from_ed_pem(p),
                }
                .map_err(|e| bad(pub_key, e))?,
            ),
        };
        let sign = match &priv_pem {
            None => None,
            Some(p) => Some(
                match family(alg) {
                    Family::Rsa => EncodingKey::from_rsa_pem(p),
                    Family::Ec => EncodingKey::from_ec_pem(p),
                    _ => EncodingKey::from_ed_pem(p),
                }
                .map_err(|e| bad(priv_key, e))?,
            ),
        };
        let verify = match (verify_pub, &priv_pem) {
            (Some(v), _) => v,
            (None, Some(p)) => public_of(alg, p, priv_key.unwrap_or_default())?,
            (None, None) => return Err(JwtError::MissingKey),
        };
        JwtTokens::checked(ttl, Keys::Lib { alg, sign, verify })
    }

    /// Both keys given: they must be a pair (etcd's ErrKeyMismatch).
    fn checked(ttl: Duration, keys: Keys) -> Result<JwtTokens, JwtError> {
        let t = JwtTokens { ttl, keys };
        let signs = match &t.keys {
            Keys::Lib { sign, .. } => sign.is_some(),
            Keys::Es512(_) => t.assign("probe", 0).is_some(),
        };
        if signs && t.info(&t.sign_claims("probe", 0)?).is_none() {
            return Err(JwtError::KeyMismatch);
        }
        Ok(t)
    }

    fn sign_claims(&self, user: &str, revision: u64) -> Result<String, JwtError> {
        let exp = SystemTime::now()
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| d.as_secs());
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        match &self.keys {
            Keys::Lib { alg, sign, .. } => {
                let key = sign.as_ref().ok_or(JwtError::MissingKey)?;
                jsonwebtoken::encode(&Header::new(*alg), &claims, key).map_err(|e| JwtError::Key {
                    path: String::new(),
                    reason: e.to_string(),
                })
            }
            Keys::Es512(k) => k.encode(&claims).ok_or(JwtError::MissingKey),
        }
    }

    /// A token for `user` at auth `revision`; None when this member has
    /// only the public key (etcd's ErrVerifyOnly).
    pub fn assign(&self, user: &str, revision: u64) -> Option<String> {
        self.sign_claims(user, revision).ok()
    }

    /// The claims of a token signed with this key and not expired; None
    /// for anything else (etcd: "invalid auth token").
    pub fn info(&self, token: &str) -> Option<Claims> {
        match &self.keys {
            Keys::Lib { alg, verify, .. } => {
                let mut v = Validation::new(*alg);
                // etcd's jwt library allows no clock leeway.
                v.leeway = 0;
                v.set_required_spec_claims(&["exp"]);
                jsonwebtoken::decode::<Claims>(token, verify, &v)
                    .ok()
                    .map(|d| d.claims)
            }
            Keys::Es512(k) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
                k.decode(token, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_option_errors() {
        assert_eq!(parse_go_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "5x", "m", "-1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let e = |o: &[&str]| JwtTokens::from_options(o).err().map(|e| e.to_string());
        let bad_method = "auth: invalid auth options (problem loading JWT options: \
                          auth: invalid auth signature method)";
        assert_eq!(
            e(&["novalue"]).as_deref(),
            Some("auth: invalid auth options")
        );
        assert_eq!(
            e(&["ttl=1s", "ttl=2s"]).as_deref(),
            Some("auth: invalid auth options")
        );
        assert_eq!(e(&["sign-method=XX1"]).as_deref(), Some(bad_method));
        assert_eq!(e(&[]).as_deref(), Some(bad_method));
        assert_eq!(
            e(&["sign-method=RS256", "bogus=1"]).as_deref(),
            Some("auth: missing key data")
        );
    }

    /// `openssl` in `dir`.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    fn opts(o: &[String]) -> Vec<&str> {
        o.iter().map(String::as_str).collect()
    }

    #[test]
    fn every_sign_method_round_trips_with_keys_openssl_made() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let gen = |name: &str, args: &[&str]| {
            let key = format!("{name}.key");
            let mut all = vec!["genpkey"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["-out", &key]);
            openssl(d, &all);
            openssl(
                d,
                &[
                    "pkey",
                    "-in",
                    &key,
                    "-pubout",
                    "-out",
                    &format!("{name}.pub"),
                ],
            );
        };
        gen(
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        );
        gen(
            "rsa2",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        );
        gen(
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        gen(
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        );
        gen("ed", &["-algorithm", "ED25519"]);
        // SEC1 ("EC PRIVATE KEY") keys, as `openssl ecparam -genkey` writes.
        for (name, curve) in [("sec1-256", "prime256v1"), ("sec1-384", "secp384r1")] {
            let key = format!("{name}.key");
            openssl(
                d,
                &["ecparam", "-name", curve, "-genkey", "-noout", "-out", &key],
            );
            let pem = std::fs::read_to_string(d.join(&key)).unwrap();
            assert!(pem.contains("BEGIN EC PRIVATE KEY"), "{pem}");
            openssl(
                d,
                &["ec", "-in", &key, "-pubout", "-out", &format!("{name}.pub")],
            );
        }
        std::fs::write(d.join("secret"), b"not so secret").unwrap();
        let p = |f: &str| d.join(f).display().to_string();
        let methods = [
            ("RS256", "rsa"),
            ("RS384", "rsa"),
            ("RS512", "rsa"),
            ("PS256", "rsa"),
            ("PS384", "rsa"),
            ("PS512", "rsa"),
            ("ES256", "p256"),
            ("ES384", "p384"),
            ("ES256", "sec1-256"),
            ("ES384", "sec1-384"),
            ("EdDSA", "ed"),
        ];
        for (m, k) in methods {
            let both = [
                format!("pub-key={}", p(&format!("{k}.pub"))),
                format!("priv-key={}", p(&format!("{k}.key"))),
                format!("sign-method={m}"),
            ];
            let t = JwtTokens::from_options(&opts(&both)).unwrap_or_else(|e| panic!("{m}: {e}"));
            let token = t.assign("alice", 7).unwrap();
            let c = t
                .info(&token)
                .unwrap_or_else(|| panic!("{m}: own token refused"));
            assert_eq!((c.username.as_str(), c.revision), ("alice", 7), "{m}");
            // priv-key alone: the public half is derived from it.
            let only_priv = JwtTokens::from_options(&opts(&both[1..])).unwrap();
            assert!(only_priv.info(&token).is_some(), "{m}: derived key");
            // pub-key alone: verifies, cannot sign (etcd's verify-only).
            let only_pub =
                JwtTokens::from_options(&opts(&[both[0].clone(), both[2].clone()])).unwrap();
            assert!(only_pub.info(&token).is_some(), "{m}: verify-only");
            assert!(
                only_pub.assign("alice", 7).is_none(),
                "{m}: verify-only signs"
            );
        }
        let hs =
            JwtTokens::from_options(&[&format!("priv-key={}", p("secret")), "sign-method=HS256"])
                .unwrap();
        assert!(hs.info(&hs.assign("u", 1).unwrap()).is_some());
        let mismatch = JwtTokens::from_options(&[
            &format!("pub-key={}", p("rsa2.pub")),
            &format!("priv-key={}", p("rsa.key")),
            "sign-method=RS256",
        ]);
        assert!(matches!(mismatch, Err(JwtError::KeyMismatch)));
        // ES512 (kvd's own P-521 path): PKCS#8 and SEC1 keys, verify-only,
        // a P-256 key refused, a mismatched pair refused.
        gen(
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        );
        gen(
            "p521b",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp521r1",
                "-genkey",
                "-noout",
                "-out",
                "sec1-521.key",
            ],
        );
        openssl(
            d,
            &[
                "ec",
                "-in",
                "sec1-521.key",
                "-pubout",
                "-out",
                "sec1-521.pub",
            ],
        );
        for k in ["p521", "sec1-521"] {
            let both = [
                format!("pub-key={}", p(&format!("{k}.pub"))),
                format!("priv-key={}", p(&format!("{k}.key"))),
                "sign-method=ES512".to_string(),
            ];
            let t = JwtTokens::from_options(&opts(&both)).unwrap_or_else(|e| panic!("{k}: {e}"));
            let token = t.assign("alice", 7).unwrap();
            let c = t.info(&token).expect("own ES512 token");
            assert_eq!((c.username.as_str(), c.revision), ("alice", 7));
            let only_pub =
                JwtTokens::from_options(&opts(&[both[0].clone(), both[2].clone()])).unwrap();
            assert!(only_pub.info(&token).is_some(), "{k}: verify-only");
            assert!(only_pub.assign("alice", 7).is_none());
            let mut forged = token.clone();
            forged.replace_range(forged.len() - 4.., "AAAA");
            assert!(t.info(&forged).is_none(), "{k}: forged signature");
        }
        let es512 =
            JwtTokens::from_options(&[&format!("priv-key={}", p("p256.key")), "sign-method=ES512"]);
        assert!(matches!(es512, Err(JwtError::Key { .. })));
        let mismatch = JwtTokens::from_options(&[
            &format!("pub-key={}", p("p521b.pub")),
            &format!("priv-key={}", p("p521.key")),
            "sign-method=ES512",
        ]);
        assert!(matches!(mismatch, Err(JwtError::KeyMismatch)));
    }
}
