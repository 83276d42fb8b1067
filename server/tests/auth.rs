//! Auth with Debian's etcdctl 3.4: the same script against kvd and etcd
//! 3.4, every step's exit code, stdout and stderr compared (etcdctl's retry
//! warnings, which carry random client ids, are dropped). A matrix of
//! users (root, a read-only role on a range, a prefix-scoped read-write
//! role, a user without roles) times request kinds, then changes that must
//! take effect at once.

mod common;

use common::*;

/// etcd 3.4 and 3.5 return the auth store's raw error from the Maintenance
/// admin checks (gRPC Unknown); etcd 3.6+ maps it to etcd's
/// PermissionDenied status (`togRPCError` in its v3rpc/maintenance.go), as
/// kvd does. The transcripts compare the two as equal.
const RAW_34_DENIED: &str = "rpc error: code = Unknown desc = auth: permission denied";

/// etcdctl's output with its volatile retry-warning lines removed and the
/// endpoint masked.
fn shown(srv: &Server, out: &std::process::Output, with_stdout: bool) -> String {
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("\"level\":\"warn\""))
        .map(|l| {
            l.replace(&srv.endpoint(), "<client-url>")
                .replace(RAW_34_DENIED, "etcdserver: permission denied")
        })
        .collect();
    let stdout = if with_stdout {
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    } else {
        "<masked>".to_string()
    };
    format!(
        "rc={} out={stdout:?} err={:?}",
        out.status.code().unwrap_or(-1),
        stderr.join("\n")
    )
}

struct Script<'a> {
    srv: &'a Server,
    log: Vec<String>,
}

impl Script<'_> {
    /// Runs one etcdctl step and records it.
    fn step(&mut self, args: &[&str]) -> String {
        self.step_in(args, "", true)
    }

    fn step_in(&mut self, args: &[&str], stdin: &str, with_stdout: bool) -> String {
        let out = self.srv.etcdctl_stdin(args, stdin);
        let line = format!("{args:?} {}", shown(self.srv, &out, with_stdout));
        eprintln!("[{}] {line}", self.srv.kind());
        self.log.push(line.clone());
        line
    }

    fn as_user(&mut self, user: &str, args: &[&str]) -> String {
        let mut all = vec!["--user", user];
        all.extend_from_slice(args);
        self.step(&all)
    }
}

const ROOT: &str = "root:rootpw";
const READER: &str = "reader:rpw";
const WRITER: &str = "writer:wpw";
const NOBODY: &str = "nobody:npw";

fn setup(s: &mut Script) {
    for args in [
        &["user", "add", ROOT][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "ro"],
        &["role", "grant-permission", "ro", "read", "a", "c"],
        &["role", "add", "rw"],
        &[
            "role",
            "grant-permission",
            "--prefix=true",
            "rw",
            "readwrite",
            "p/",
        ],
        &["user", "add", READER],
        &["user", "grant-role", "reader", "ro"],
        &["user", "add", WRITER],
        &["user", "grant-role", "writer", "rw"],
        &["user", "add", NOBODY],
        &["put", "a1", "v1"],
        &["put", "p/0", "v0"],
        &["auth", "enable"],
    ] {
        s.step(args);
    }
}

/// A server with auth set up by [`setup`]. kvd hashes with bcrypt cost 4:
/// cost 10 takes seconds in an unoptimized build, past etcdctl's dial timeout.
async fn started(kind: Kind) -> Server {
    let opts = match kind {
        Kind::Kvd => Options::default().arg("bcrypt-cost", 4),
        Kind::Etcd => Options::default(),
    };
    Server::start_with(kind, opts).await
}

/// Every request kind for each of `users`.
fn matrix(s: &mut Script, users: &[&str]) {
    for &user in users {
        s.as_user(user, &["put", "p/1", "v"]);
        s.as_user(user, &["get", "p/1"]);
        s.as_user(user, &["get", "a1"]);
        s.as_user(user, &["get", "a", "c"]);
        s.as_user(user, &["get", "a", "d"]);
        s.as_user(user, &["get", "--prefix", "p/"]);
        s.as_user(user, &["get", "--from-key", "a"]);
        s.as_user(user, &["put", "--prev-kv", "p/2", "x"]);
        s.as_user(user, &["put", "a2", "x"]);
        s.as_user(user, &["del", "p/2"]);
        s.as_user(user, &["del", "--prefix", "a"]);
        // A txn whose compare reads a1 and whose branches write p/3.
        let txn = "value(\"a1\") = \"v1\"\n\nput p/3 yes\n\nput p/3 no\n\n";
        let mut args = vec!["--user", user, "txn"];
        args.push("--interactive=false");
        s.step_in(&args, txn, true);
        let lease = s.step_in(&["--user", user, "lease", "grant", "60"], "", false);
        assert!(lease.contains("rc=0"), "{lease}");
        s.as_user(user, &["user", "list"]);
        s.as_user(user, &["role", "get", "ro"]);
        s.as_user(user, &["user", "get", "reader"]);
        // Admin RPCs need root; stdout names endpoints or ids: masked.
        for admin in [
            &["alarm", "list"][..],
            &["defrag"],
            &["endpoint", "hashkv"],
            &["member", "list"],
        ] {
            let mut args = vec!["--user", user];
            args.extend_from_slice(admin);
            s.step_in(&args, "", false);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_matrix_root_and_reader_match_etcd() {
    each_kind(|kind| async move {
        let srv = started(kind).await;
        let mut s = Script {
            srv: &srv,
            log: vec![],
        };
        setup(&mut s);
        // No credentials once auth is on.
        let anon = s.step(&["get", "a1"]);
        assert!(anon.contains("user name is empty"), "{anon}");
        s.step(&["put", "a1", "x"]);
        matrix(&mut s, &[ROOT, READER]);
        s.log
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_matrix_writer_and_no_role_match_etcd() {
    each_kind(|kind| async move {
        let srv = started(kind).await;
        let mut s = Script {
            srv: &srv,
            log: vec![],
        };
        setup(&mut s);
        matrix(&mut s, &[WRITER, NOBODY]);
        s.log
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_changes_take_effect_at_once_as_in_etcd() {
    each_kind(|kind| async move {
        let srv = started(kind).await;
        let mut s = Script {
            srv: &srv,
            log: vec![],
        };
        setup(&mut s);
        // A watch on a range the user may not read is refused at creation
        // (etcdctl exits; an allowed watch would block, so only denied ones).
        s.as_user(NOBODY, &["watch", "--prefix", "p/"]);
        s.as_user(READER, &["watch", "p/1"]);
        // Wrong password, unknown user.
        s.as_user("reader:wrong", &["get", "a1"]);
        s.as_user("ghost:x", &["get", "a1"]);
        // A revoked permission takes effect at once.
        s.as_user(READER, &["get", "a1"]);
        s.as_user(ROOT, &["role", "revoke-permission", "ro", "a", "c"]);
        let denied = s.as_user(READER, &["get", "a1"]);
        assert!(denied.contains("permission denied"), "{denied}");
        s.as_user(ROOT, &["role", "revoke-permission", "ro", "a", "c"]);
        // Root may not lose its role or be deleted while auth is on.
        s.as_user(ROOT, &["user", "revoke-role", "root", "root"]);
        s.as_user(ROOT, &["user", "delete", "root"]);
        s.as_user(ROOT, &["role", "delete", "root"]);
        // Deleting a role takes it from its users.
        s.as_user(ROOT, &["role", "delete", "rw"]);
        s.as_user(WRITER, &["put", "p/1", "v"]);
        s.as_user(ROOT, &["user", "get", "writer"]);
        // A changed password: the old one no longer works.
        s.as_user(ROOT, &["user", "passwd", "reader", "--interactive=false"]);
        s.as_user(ROOT, &["user", "list"]);
        s.as_user(READER, &["auth", "disable"]);
        s.as_user(ROOT, &["auth", "disable"]);
        s.step(&["get", "a1"]);
        s.step(&["user", "list"]);
        s.step(&["role", "list"]);
        // Enabling needs a root user holding the root role.
        s.step(&["user", "revoke-role", "root", "root"]);
        s.step(&["auth", "enable"]);
        s.step(&["user", "delete", "root"]);
        s.step(&["auth", "enable"]);
        s.log
    })
    .await;
}
