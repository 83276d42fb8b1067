//! The subject CN of an X.509 certificate, read from its DER with a small
//! bounds-checked walker (the certificate was verified already; this only
//! finds the name in it).

/// One DER element: (tag, contents, what follows). None if truncated or
/// longer than the input.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        // Indefinite lengths are not DER; more than 4 bytes is no certificate.
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, r) = rest.split_at_checked(n)?;
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// The explicit [0] tag of tbsCertificate's version.
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's common name; with several, the last (as Go's
/// `pkix.Name.CommonName`, which etcd reads). None if there is none or the
/// DER is malformed.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(cert_der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let (VERSION, _, r) = element(rest)? {
        rest = r;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = element(rest)? else {
        return None;
    };
    let mut cn = None;
    while !rdns.is_empty() {
        let (SET, mut attrs, next) = element(rdns)? else {
            return None;
        };
        rdns = next;
        while !attrs.is_empty() {
            let (SEQUENCE, attr, next) = element(attrs)? else {
                return None;
            };
            attrs = next;
            let (OID, oid, value) = element(attr)? else {
                return None;
            };
            if oid == CN_OID {
                let (tag, bytes, _) = element(value)?;
                cn = Some(decode_string(tag, bytes)?);
            }
        }
    }
    cn
}

/// A directory string: UTF8String, PrintableString, IA5String or
/// TeletexString as bytes (all ASCII-compatible), BMPString as UTF-16BE.
fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(bytes.to_vec()).ok(),
        0x1e => {
            let chunks = bytes.chunks_exact(2);
            if !chunks.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = chunks.map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}
