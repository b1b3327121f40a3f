//! Storage on a real three-node MariaDB Galera cluster (made for the test by
//! `mpesa_harness::galera`), one storage per node as three gateway instances would have it.
//!
//! One test, in steps, because a cluster takes ~10 s to make: migrations racing on three nodes;
//! the settings and state checked at start; claims, leases and settings agreed across nodes;
//! duplicates of one callback over three nodes settle once, every copy stored (conflicts are
//! stored raw and applied after); a frozen node is refused at once and served again after.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpesa_domain::PaymentStatus;
use mpesa_harness::galera::GaleraCluster;
use mpesa_storage::*;
use sqlx::Connection as _;
use support::*;

/// Runs `op` again while it fails for a conflict, as the gateway's workers do on their next tick
/// (five attempts inside storage were not enough: many workers at once on the same rows).
async fn until_no_conflict<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    loop {
        match op().await {
            Ok(v) => return v,
            Err(StorageError::Unavailable(m)) if m.contains("conflict") => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn open(url: &str) -> Arc<dyn Storage> {
    connect(
        url,
        &ConnectOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot open {url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_three_galera_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = GaleraCluster::start(3, dir.path()).await.unwrap();
    let name = cluster.create_database("mpesa_test_galera").await.unwrap();
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url(&name)).collect();

    // ---- start: three instances migrate at once, each on its own node.
    let mut nodes = Vec::new();
    for url in &urls {
        nodes.push(open(url).await);
    }
    let migrations = futures::future::join_all(nodes.iter().map(|s| s.migrate())).await;
    for m in migrations {
        m.expect("concurrent migrations on three nodes all succeed");
    }
    for (i, s) in nodes.iter().enumerate() {
        let status = s.cluster_status().expect("a Galera node is recognised");
        assert!(status.serving, "{status:?}");
        assert_eq!(status.node, format!("node{}", i + 1));
        assert_eq!(status.cluster_size, 3);
        let version = s.check_server().await.unwrap();
        assert!(version.contains("Galera node"), "{version}");
        s.migrate().await.expect("migrating again changes nothing");
    }

    // ---- a node without the settings Galera needs is refused at start.
    let mut admin = sqlx::MySqlConnection::connect(&cluster.admin_url(2))
        .await
        .unwrap();
    sqlx::raw_sql("SET GLOBAL wsrep_OSU_method = 'RSU'")
        .execute(&mut admin)
        .await
        .unwrap();
    let refused = connect(&urls[2], &ConnectOptions::default()).await;
    sqlx::raw_sql("SET GLOBAL wsrep_OSU_method = 'TOI'")
        .execute(&mut admin)
        .await
        .unwrap();
    match refused {
        Err(StorageError::Unsupported(m)) => assert!(m.contains("wsrep_osu_method=TOI"), "{m}"),
        Err(other) => panic!("expected Unsupported, got {other}"),
        Ok(_) => panic!("a node with wsrep_OSU_method=RSU was accepted"),
    }

    // ---- claims and leases: each due payment, each outbox event, each lease to one node.
    let s = &nodes[0];
    for n in 0..60 {
        let mut p = new_payment(&pay_id(n), T0);
        p.next_check_at = T0 + i64::from(n % 7);
        create(&**s, p).await;
    }
    s.enqueue_outbox(
        (0..60)
            .map(|n| outbox_event(&format!("evt_{n:03}"), None, &format!("k{n}"), T0))
            .collect(),
    )
    .await
    .unwrap();
    let now = T0 + 10;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let s = nodes[worker % 3].clone();
        tasks.spawn(async move {
            let (mut checks, mut events) = (Vec::new(), Vec::new());
            loop {
                let c = until_no_conflict(|| s.claim_due_checks(now, now + 60_000, 3)).await;
                let owner = format!("worker-{worker}");
                let o = until_no_conflict(|| s.claim_outbox(now, &owner, now + 60_000, 3)).await;
                if c.is_empty() && o.is_empty() {
                    break;
                }
                checks.extend(c.into_iter().map(|p| p.id));
                events.extend(o.into_iter().map(|e| (e.id, worker)));
            }
            (checks, events)
        });
    }
    let (mut checks, mut events) = (Vec::new(), Vec::new());
    for (c, e) in tasks.join_all().await {
        checks.extend(c);
        events.extend(e);
    }
    let unique: HashSet<_> = checks.iter().collect();
    assert_eq!(
        (checks.len(), unique.len()),
        (60, 60),
        "each due payment claimed by one node"
    );
    let unique: HashSet<_> = events.iter().map(|(id, _)| id).collect();
    assert_eq!(
        (events.len(), unique.len()),
        (60, 60),
        "each outbox event claimed by one node"
    );
    // The lease recorded is the claimer's, read on another node.
    for (id, worker) in &events {
        let e = nodes[(worker + 1) % 3]
            .get_outbox_event(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.lease_owner, Some(format!("worker-{worker}")));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12 {
        let s = nodes[n % 3].clone();
        tasks.spawn(async move {
            let owner = format!("owner-{n}");
            until_no_conflict(|| s.acquire_lease("telegram-poller", &owner, T0, T0 + 60_000)).await
        });
    }
    let winners = tasks.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(winners, 1, "one holder of a lease across nodes");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12 {
        let s = nodes[n % 3].clone();
        tasks.spawn(async move {
            let value = format!("secret-{n}");
            until_no_conflict(|| s.put_setting_if_absent("callback_secret", &value, T0)).await
        });
    }
    let agreed: HashSet<String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(
        agreed.len(),
        1,
        "one generated secret for every node: {agreed:?}"
    );

    // ---- 30 copies of each of 10 successes, in batches of 10 (as group commit makes them)
    // from three nodes at once: every copy stored, each payment settled once.
    const PAID: u32 = 10;
    const COPIES: usize = 30;
    for n in 0..PAID {
        create(&**s, new_payment(&pay_id(1000 + n), T0)).await;
        set(
            &**s,
            &pay_id(1000 + n),
            T0 + 1,
            accepted(&format!("ws_CO_DUP{n:02}")),
        )
        .await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for copy in 0..COPIES {
        let s = nodes[copy % 3].clone();
        let batch: Vec<_> = (0..PAID)
            .map(|n| {
                stk_callback(
                    &format!("cb_{copy:02}_{n:02}"),
                    &format!("ws_CO_DUP{n:02}"),
                    &success_report(&format!("RCPT_DUP{n:02}")),
                )
            })
            .collect();
        tasks.spawn(async move {
            s.ingest_callbacks(&batch, T0 + 10, &decide)
                .await
                .expect("stored whatever the contention")
                .into_iter()
                .map(|r| r.expect("stored whatever the contention").outcome)
                .collect::<Vec<_>>()
        });
    }
    let mut outcomes: HashMap<CallbackOutcome, usize> = HashMap::new();
    for batch in tasks.join_all().await {
        for outcome in batch {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    let received = outcomes
        .get(&CallbackOutcome::Received)
        .copied()
        .unwrap_or(0);
    let count = |o| outcomes.get(&o).copied().unwrap_or(0);
    assert!(
        count(CallbackOutcome::Applied) <= PAID as usize,
        "{outcomes:?}"
    );
    assert_eq!(
        count(CallbackOutcome::Applied) + received + count(CallbackOutcome::Duplicate),
        COPIES * PAID as usize,
        "{outcomes:?}"
    );
    // What was stored raw is applied now, from any node, as the gateways' re-drive does.
    let left = nodes[1]
        .received_callbacks(T0 + 1_000, 1_000)
        .await
        .unwrap();
    assert_eq!(left.len(), received);
    for (n, cb) in left.iter().enumerate() {
        let s = &nodes[n % 3];
        until_no_conflict(|| s.reapply_callback(&cb.id, T0 + 20, &decide)).await;
    }
    for n in 0..PAID {
        let id = pay_id(1000 + n);
        let p = nodes[2].get_payment(&id).await.unwrap().unwrap();
        assert_eq!(
            (p.status, p.version),
            (PaymentStatus::Completed, 3),
            "changed once"
        );
        assert_eq!(nodes[2].outbox_for_payment(&id).await.unwrap().len(), 1);
        let stored = nodes[2].callbacks_for_payment(&id).await.unwrap();
        assert_eq!(stored.len(), COPIES, "every raw callback kept");
        let applied = stored
            .iter()
            .filter(|c| c.outcome == CallbackOutcome::Applied)
            .count();
        assert_eq!(applied, 1, "applied once");
        assert!(
            stored
                .iter()
                .all(|c| c.outcome != CallbackOutcome::Received)
        );
    }
    eprintln!("batches from three nodes: {outcomes:?}");

    // ---- settling by hand: two nodes record one receipt for two held payouts at once. One is
    // recorded; the other is refused (its first try lost certification and ran again), or at
    // worst fails for the conflict having written nothing: never both recorded.
    let mut wrong = Vec::new();
    for round in 0..10u32 {
        let receipt = format!("SGG{round:07}");
        let a = held_payout(&*nodes[0], &format!("g{round}_a")).await.id;
        let b = held_payout(&*nodes[1], &format!("g{round}_b")).await.id;
        let results = [
            tokio::spawn({
                let (s, receipt) = (nodes[0].clone(), receipt.clone());
                async move { settle_completed(&*s, &a, &receipt).await }
            }),
            tokio::spawn({
                let (s, receipt) = (nodes[1].clone(), receipt.clone());
                async move { settle_completed(&*s, &b, &receipt).await }
            }),
        ];
        let results = futures::future::join_all(results).await;
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        let settled = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        let lost = results
            .iter()
            .filter(|r| match r {
                Err(StorageError::Conflict(why)) => why.starts_with("receipt_in_use"),
                Err(StorageError::Unavailable(why)) => why.contains("conflict"),
                _ => false,
            })
            .count();
        if (settled, lost) != (1, 1) {
            wrong.push(format!("round {round}: {results:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "one receipt, one settlement: {} of 10 rounds went wrong: {wrong:#?}",
        wrong.len()
    );

    // ---- a frozen node: its storage refuses at once, and serves again after.
    cluster.freeze(2).unwrap();
    let frozen_at = Instant::now();
    while nodes[2].cluster_status().unwrap().serving {
        assert!(
            frozen_at.elapsed() < Duration::from_secs(10),
            "still serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let err = nodes[2].get_payment(&pay_id(1)).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains("refusing to serve")),
        "{err:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    cluster.thaw(2).unwrap();
    let thawed_at = Instant::now();
    while !nodes[2].cluster_status().unwrap().serving {
        assert!(
            thawed_at.elapsed() < Duration::from_secs(120),
            "never served again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        nodes[2]
            .get_payment(&pay_id(1000))
            .await
            .unwrap()
            .unwrap()
            .status,
        PaymentStatus::Completed
    );
    for s in &nodes {
        s.close().await;
    }
}
