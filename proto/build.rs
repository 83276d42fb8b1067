//! Compiles the .proto files under `proto/` into Rust at build time.
//!
//! Parsing is done in pure Rust by `protox`, so no `protoc` binary is needed:
//! the resulting `FileDescriptorSet` is handed to `tonic-prost-build`, which
//! never invokes protoc when given descriptors directly.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "kvpb/internal.proto",
    "kvpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(PROTOS, [&root])?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds.clone())?;

    // `json` feature: proto3-JSON serde impls (etcd's grpc-gateway mapping)
    // for the etcd API packages, appended to each package's generated file so
    // the impls live next to their types (orphan rule).
    if std::env::var_os("CARGO_FEATURE_JSON").is_some() {
        json(&fds)?;
    }
    Ok(())
}

/// The packages etcd's HTTP gateway speaks; `kvpb` is internal.
const JSON_PACKAGES: &[&str] = &[
    "mvccpb",
    "authpb",
    "etcdserverpb",
    "v3lockpb",
    "v3electionpb",
];

fn json(fds: &prost_types::FileDescriptorSet) -> Result<(), Box<dyn std::error::Error>> {
    use prost::Message as _;
    use std::io::Write as _;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let packages: Vec<String> = JSON_PACKAGES.iter().map(|p| format!(".{p}")).collect();
    pbjson_build::Builder::new()
        .register_descriptors(&fds.encode_to_vec())?
        .out_dir(&out)
        // etcd's gateway prints proto field names (OrigName) and accepts
        // requests with fields it does not know.
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&packages)?;
    for p in JSON_PACKAGES {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join(format!("{p}.rs")))?;
        writeln!(
            f,
            "include!(concat!(env!(\"OUT_DIR\"), \"/{p}.serde.rs\"));"
        )?;
    }
    Ok(())
}
