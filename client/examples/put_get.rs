//! Put a few keys and read them back, one by one and by prefix.
//!
//! ```sh
//! cargo run -p kv-client --example put_get -- 127.0.0.1:2379
//! ```

use kv_client::{Client, ClientConfig, GetOptions, PutOptions};

#[tokio::main]
async fn main() -> kv_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let client = Client::connect(ClientConfig::new([endpoint])).await?;

    client.put("example/a", "1", None).await?;
    client.put("example/b", "2", None).await?;
    let prev = client
        .put("example/a", "one", PutOptions::new().with_prev_kv())
        .await?;
    println!(
        "overwrote {:?} at revision {}",
        prev.prev_kv()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
        prev.revision()
    );

    let one = client.get("example/a", None).await?;
    for kv in one.kvs() {
        println!(
            "{} = {}",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
    }
    let all = client
        .get("example/", GetOptions::new().with_prefix())
        .await?;
    println!("{} keys under example/", all.count());
    Ok(())
}
