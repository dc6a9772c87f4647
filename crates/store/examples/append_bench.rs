//! Event-append throughput of the store alone: `T` tasks, each appending `N` events for its
//! own user, as runs do. `cargo run --release -p apogee-store --example append_bench -- T N`.

use std::time::Instant;

use apogee_store::{Store, UserKey};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let per_task: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await?;
    let payload = "x".repeat(400);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, payload) = (store.clone(), payload.clone());
        handles.push(tokio::spawn(async move {
            let user = UserKey {
                org_id: "o".into(),
                user_id: format!("u{t}"),
            };
            for _ in 0..per_task {
                let p = payload.clone();
                store
                    .append_event(&user, Some("r"), "t", 0, move |seq| {
                        format!("{{\"seq\":{seq},\"p\":\"{p}\"}}")
                    })
                    .await?;
            }
            Ok::<_, apogee_store::StoreError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let n = tasks * per_task;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} events appended by {tasks} writers in {secs:.2}s: {:.0} events/s",
        n as f64 / secs
    );
    Ok(())
}
