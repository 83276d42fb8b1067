//! Grant a lease, attach a key, keep it alive, and stop when it is lost.
//!
//! ```sh
//! cargo run -p kv-client --example lease -- 127.0.0.1:2379
//! ```

use std::time::Duration;

use kv_client::{Client, ClientConfig, Error, PutOptions};

#[tokio::main]
async fn main() -> kv_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let client = Client::connect(ClientConfig::new([endpoint])).await?;

    let lease = client.lease_grant(5).await?;
    println!("lease {:x}, ttl {}s", lease.id(), lease.ttl());
    client
        .put(
            "example/service",
            "127.0.0.1:8080",
            PutOptions::new().with_lease(lease.id()),
        )
        .await?;
    let keeper = client.lease_keeper(lease.id()).await?;

    // Work until the lease is lost or for 10 s, whichever comes first.
    tokio::select! {
        reason = keeper.lost() => println!("lease lost: {reason}"),
        _ = tokio::time::sleep(Duration::from_secs(10)) => println!("done; ttl was {}s", keeper.ttl()),
    }
    match client.lease_revoke(lease.id()).await {
        // Already gone (revoked by someone else, or expired): nothing to do.
        Ok(_) | Err(Error::LeaseNotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
