//! The chat send path without the network: seal with AES-256-GCM and commit in one transaction
//! (`Store::send_message`), on SQLite in a temp dir. Beside it, the cipher alone as a lower bound.
//! Run: `cargo bench -p mescon --bench chat_send`. Results: benches/README.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mescon::crypto::KeyRing;
use mescon::store::Store;

fn bench_send(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let ring = KeyRing::parse(&KeyRing::generate_spec("bench")).expect("ring");
    let (store, a, b) = rt.block_on(async {
        let store = Store::open(&url).await.expect("store");
        let a = store
            .user_for_login("+12015550100", 0)
            .await
            .expect("user a");
        let b = store
            .user_for_login("+12015550101", 0)
            .await
            .expect("user b");
        (store, a.id, b.id)
    });
    let body = "x".repeat(100);

    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_100B", |bench| {
        bench.iter(|| {
            ring.seal(body.as_bytes(), b"mescon-msg|id|conversation|sender")
                .expect("seal")
        });
    });
    let mut n = 0u64;
    group.bench_function("send_message_sqlite", |bench| {
        bench.iter(|| {
            n += 1;
            rt.block_on(store.send_message(&ring, &a, &b, &format!("c{n}"), &body, n as i64))
                .expect("send")
        });
    });
    // Eight senders at once, as a busy server sees them: the write gate queues them for SQLite's one writer.
    let shared =
        std::sync::Arc::new(KeyRing::parse(&KeyRing::generate_spec("bench")).expect("ring"));
    group.throughput(Throughput::Elements(8));
    group.bench_function("send_message_sqlite_8_concurrent", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::with_capacity(8);
                for _ in 0..8 {
                    n += 1;
                    let (store, ring, a, b, body) = (
                        store.clone(),
                        shared.clone(),
                        a.clone(),
                        b.clone(),
                        body.clone(),
                    );
                    let client_id = format!("p{n}");
                    tasks.push(tokio::spawn(async move {
                        store
                            .send_message(&ring, &a, &b, &client_id, &body, 0)
                            .await
                            .expect("send")
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench_send);
criterion_main!(benches);
