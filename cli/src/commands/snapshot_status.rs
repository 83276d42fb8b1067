//! `snapshot status FILE`: what etcdctl 3.4 prints of an etcd v3 snapshot
//! file (hash, revision, total keys, total size), read with kv-etcdsnap.
//! Like etcdctl 3.4 it reads the bbolt file without checking the SHA-256
//! trailer, and counts every record of every bucket as "total keys".

use kv_etcdsnap::{OpenOptions, Snapshot, Status};

use super::Output;
use crate::exit::{ExitError, EXIT_ERROR};
use crate::printer::humanize_bytes;
use crate::printer::table::render as table;

/// Reads the status of the one file named in `args`.
pub fn run(args: &[String]) -> Result<Output, ExitError> {
    let [path] = args else {
        return Err(ExitError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    };
    if let Err(e) = std::fs::metadata(path) {
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        return Err(ExitError::new(EXIT_ERROR, format!("stat {path}: {what}")));
    }
    let opts = OpenOptions {
        skip_hash_check: true,
    };
    // etcdctl says only this when bbolt cannot open the file.
    let snap = Snapshot::open_with(path, opts)
        .map_err(|_| ExitError::new(EXIT_ERROR, "invalid database"))?;
    let st = snap
        .status()
        .map_err(|e| ExitError::new(EXIT_ERROR, e.to_string()))?;
    Ok(Output::SnapshotStatus(st))
}

/// The status in output format `format` (a printer's name), as etcdctl 3.4.
pub fn render(format: &str, st: &Status) -> String {
    match format {
        "json" => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            st.hash, st.revision, st.total_key, st.total_size
        ),
        "fields" => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            st.hash, st.revision, st.total_key, st.total_size
        ),
        "table" => table(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[cells(st)],
        ),
        _ => format!("{}\n", cells(st).join(", ")),
    }
}

fn cells(st: &Status) -> Vec<String> {
    vec![
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_key.to_string(),
        humanize_bytes(st.total_size),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_as_etcdctl_prints_it() {
        let st = Status {
            hash: 1877046015,
            revision: 3,
            total_key: 6,
            live_keys: 2,
            version: None,
            total_size: 20480,
        };
        assert_eq!(
            render("json", &st),
            "{\"hash\":1877046015,\"revision\":3,\"totalKey\":6,\"totalSize\":20480}\n"
        );
        assert_eq!(render("simple", &st), "6fe172ff, 3, 6, 20 kB\n");
        assert_eq!(
            render("fields", &st),
            "\"Hash\" : 1877046015\n\"Revision\" : 3\n\"Keys\" : 6\n\"Size\" : 20480\n"
        );
        assert_eq!(
            render("table", &st),
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | 6fe172ff |        3 |          6 |      20 kB |\n\
             +----------+----------+------------+------------+\n"
        );
    }
}
