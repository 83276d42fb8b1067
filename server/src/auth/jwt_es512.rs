//! ES512 (ECDSA P-521 with SHA-512) JWT tokens, which etcd offers and the
//! jsonwebtoken crate does not: the compact JWS form (RFC 7515) with the
//! RustCrypto p521 crate for the curve. Only what etcd's tokens use: a fixed
//! header, etcd's claims, the 132-byte r||s signature, expiry checked
//! without leeway (as etcd's jwt library).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p521::ecdsa::signature::{Signer, Verifier};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use p521::pkcs8::{DecodePrivateKey, DecodePublicKey};

use super::jwt::{Claims, JwtError};

/// The only header kvd writes (and the algorithm it accepts).
const HEADER: &str = r#"{"alg":"ES512","typ":"JWT"}"#;

/// A P-521 key pair, or only its public half (verify-only, as etcd allows).
pub struct Es512 {
    sign: Option<SigningKey>,
    verify: VerifyingKey,
}

fn key_err(path: &str, reason: impl ToString) -> JwtError {
    JwtError::Key {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

impl Es512 {
    /// Loads PEM keys: a private key as PKCS#8 or SEC1 (`BEGIN EC PRIVATE
    /// KEY`), a public key as SubjectPublicKeyInfo. With both, they must be
    /// a pair.
    pub fn load(
        public: Option<(&str, &[u8])>,
        private: Option<(&str, &[u8])>,
    ) -> Result<Es512, JwtError> {
        let text = |path: &str, pem: &[u8]| -> Result<String, JwtError> {
            String::from_utf8(pem.to_vec()).map_err(|e| key_err(path, e))
        };
        let sign = match private {
            None => None,
            Some((path, pem)) => {
                let pem = text(path, pem)?;
                let secret = if pem.contains("BEGIN EC PRIVATE KEY") {
                    p521::SecretKey::from_sec1_pem(&pem).map_err(|e| key_err(path, e))?
                } else {
                    p521::SecretKey::from_pkcs8_pem(&pem).map_err(|e| key_err(path, e))?
                };
                Some(SigningKey::from_bytes(&secret.to_bytes()).map_err(|e| key_err(path, e))?)
            }
        };
        let verify = match (public, &sign) {
            (Some((path, pem)), _) => {
                let pem = text(path, pem)?;
                let pk =
                    p521::PublicKey::from_public_key_pem(&pem).map_err(|e| key_err(path, e))?;
                VerifyingKey::from_affine(*pk.as_affine()).map_err(|e| key_err(path, e))?
            }
            (None, Some(s)) => VerifyingKey::from(s),
            (None, None) => return Err(JwtError::MissingKey),
        };
        Ok(Es512 { sign, verify })
    }

    /// A signed token carrying `claims`; None when only the public key is held.
    pub fn encode(&self, claims: &Claims) -> Option<String> {
        let key = self.sign.as_ref()?;
        let payload = serde_json::to_vec(claims).ok()?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig: Signature = key.sign(signing_input.as_bytes());
        Some(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        ))
    }

    /// The claims of a token this key signed, with ES512 in its header and
    /// not expired at `now` (Unix seconds); None for anything else.
    pub fn decode(&self, token: &str, now: u64) -> Option<Claims> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "ES512" {
            return None;
        }
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        self.verify.verify(signing_input.as_bytes(), &sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now).then_some(claims)
    }
}
