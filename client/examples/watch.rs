//! Watch a prefix while writing to it; the watch resumes by itself if the
//! connection drops (try restarting the server while it runs).
//!
//! ```sh
//! cargo run -p kv-client --example watch -- 127.0.0.1:2379
//! ```

use std::time::Duration;

use futures::StreamExt;
use kv_client::{Client, ClientConfig, Error, WatchOptions};

#[tokio::main]
async fn main() -> kv_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let client = Client::connect(ClientConfig::new([endpoint])).await?;

    let mut stream = client
        .watch("example/watch/", WatchOptions::new().with_prefix())
        .await?;

    let writer = client.clone();
    tokio::spawn(async move {
        for i in 0..5 {
            let _ = writer
                .put(format!("example/watch/{i}"), i.to_string(), None)
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    let mut seen = 0;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(batch) => {
                for e in batch.events() {
                    if let Some(kv) = &e.kv {
                        println!(
                            "{:?} {} @ {}",
                            e.r#type(),
                            String::from_utf8_lossy(&kv.key),
                            kv.mod_revision
                        );
                    }
                    seen += 1;
                }
            }
            // Terminal: the history needed to resume is gone; re-read and re-watch.
            Err(Error::Compacted { compact_revision }) => {
                eprintln!("compacted at {compact_revision:?}");
                break;
            }
            Err(e) => return Err(e),
        }
        if seen >= 5 {
            break;
        }
    }
    Ok(())
}
