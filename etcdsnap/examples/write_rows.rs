//! Writes a synthetic etcd snapshot with N rows and prints its status; used to
//! measure the writer's speed and memory (`/usr/bin/time -v`).
//!
//!     cargo run -p kv-etcdsnap --example write_rows -- OUT.db 1000000 [--no-status]

use kv_etcdsnap::{MetaInfo, Revision, Row, Snapshot, SnapshotWriter};
use kv_proto::mvccpb::KeyValue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: write_rows OUT N")?;
    let n: i64 = args.next().ok_or("usage: write_rows OUT N")?.parse()?;
    let start = std::time::Instant::now();
    let file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut w = SnapshotWriter::new(file)?;
    for i in 0..n {
        let rev = i + 2;
        let kv = KeyValue {
            key: format!("/registry/pods/ns/pod-{i:08}").into_bytes(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value: vec![b'v'; 256],
            lease: 0,
        };
        w.push_row(&Row {
            rev: Revision { main: rev, sub: 0 },
            tombstone: false,
            kv,
        })?;
    }
    w.set_meta(&MetaInfo {
        consistent_index: n as u64,
        term: Some(1),
        ..Default::default()
    })?;
    let (_, size) = w.finish()?;
    let written = start.elapsed();
    if args.next().as_deref() == Some("--no-status") {
        println!("rows {n}, db {size} bytes, write {written:?}");
        return Ok(());
    }
    let st = Snapshot::open(&out)?.status()?;
    println!(
        "rows {n}, db {size} bytes, write {written:?}, status {st:?}, open+status {:?}",
        start.elapsed() - written
    );
    Ok(())
}
