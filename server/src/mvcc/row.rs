//! The encoding of one `kv` table row: a kind byte (put or tombstone), then
//! the encoded `mvccpb.KeyValue`. Rows are decoded strictly: anything else
//! is an error naming the revision and what is wrong with it.

use kv_proto::mvccpb::KeyValue;
use prost::Message;
use redb::ReadableTable;

use super::{MvccError, Revision};

pub(crate) const KIND_PUT: u8 = 0;
pub(crate) const KIND_TOMBSTONE: u8 = 1;

pub(crate) fn encode_row(kind: u8, kv: &KeyValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + kv.encoded_len());
    buf.push(kind);
    // Encoding into a Vec cannot fail.
    let _ = kv.encode(&mut buf);
    buf
}

pub(crate) fn decode_row(rev: Revision, bytes: &[u8]) -> Result<(bool, KeyValue), MvccError> {
    let corrupt = |why: String| MvccError::Corrupt(format!("{}.{} ({why})", rev.main, rev.sub));
    let (kind, body) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty row".into()))?;
    let kv = KeyValue::decode(body).map_err(|e| corrupt(e.to_string()))?;
    match *kind {
        KIND_PUT => Ok((false, kv)),
        KIND_TOMBSTONE => Ok((true, kv)),
        k => Err(corrupt(format!("unknown row kind {k}"))),
    }
}

/// The live value a put row at `rev` holds; `None` for a tombstone or no row.
pub(super) fn fetch_put(
    table: &impl ReadableTable<u128, &'static [u8]>,
    rev: Revision,
) -> Result<Option<KeyValue>, MvccError> {
    match table.get(rev.to_key())? {
        Some(v) => match decode_row(rev, v.value())? {
            (false, kv) => Ok(Some(kv)),
            (true, _) => Ok(None),
        },
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_row_is_an_error_naming_its_revision() {
        let rev = Revision { main: 7, sub: 2 };
        let kv = KeyValue {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let good = encode_row(KIND_TOMBSTONE, &kv);
        assert_eq!(decode_row(rev, &good).expect("decodes"), (true, kv));
        for (bytes, why) in [
            (Vec::new(), "empty row"),
            (vec![9, 0x0a, 0x01, b'k'], "unknown row kind 9"),
            (vec![KIND_PUT, 0x0a, 0x05, b'k'], "buffer underflow"),
        ] {
            let e = decode_row(rev, &bytes).expect_err("corrupt");
            let text = e.to_string();
            assert!(text.contains("7.2"), "{text}");
            assert!(text.contains(why), "{text}");
        }
    }
}
