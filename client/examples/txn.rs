//! Compare-and-swap with a transaction: increment a counter safely.
//!
//! ```sh
//! cargo run -p kv-client --example txn -- 127.0.0.1:2379
//! ```

use kv_client::{Client, ClientConfig, Compare, CompareOp, Txn, TxnOp};

#[tokio::main]
async fn main() -> kv_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let client = Client::connect(ClientConfig::new([endpoint])).await?;
    let key = "example/counter";

    loop {
        let current = client.get(key, None).await?;
        let (value, mod_rev) = match current.kvs().first() {
            Some(kv) => (
                String::from_utf8_lossy(&kv.value)
                    .parse::<u64>()
                    .unwrap_or(0),
                kv.mod_revision,
            ),
            None => (0, 0),
        };
        // Write only if nobody changed the key since we read it.
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_rev)])
            .and_then([TxnOp::put(key, (value + 1).to_string(), None)]);
        if client.txn(txn).await?.succeeded() {
            println!("counter is now {}", value + 1);
            return Ok(());
        }
        println!("lost a race, retrying");
    }
}
