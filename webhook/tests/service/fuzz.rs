//! Thousands of random and mutated AdmissionReview bodies: every one gets an answer (200 or 400),
//! nothing panics, and memory stays bounded. Seeded, so a failure reproduces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;
use vmdistributed_webhook::metrics::Metrics;
use vmdistributed_webhook::routes::{AppState, admission_router};

/// xorshift64*: tiny, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const STRINGS: &[&str] = &[
    "",
    "%ZONE%",
    "zone-a",
    "Zone_A",
    "a-very-long-name-that-goes-on-and-on-and-on-beyond-every-limit-kubernetes-has",
    "VMSingle",
    "VMCluster",
    "read-only",
    "maintenance",
    "-1s",
    "0s",
    "5m",
    "1h30m",
    "10000000h",
    "\u{0}",
    "é%ZONE%é",
    "{$patch: delete}",
    "delete",
    "replace",
    "true",
    "monitoring",
    "other-ns",
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(f64::from(rng.below(1000) as u32) / 7.0),
        4 => Value::String(STRINGS[rng.below(STRINGS.len())].to_owned()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        6 => {
            let mut map = Map::new();
            for _ in 0..rng.below(4) {
                let key = [
                    "name",
                    "ref",
                    "spec",
                    "$patch",
                    "namespace",
                    "%ZONE%",
                    "zones",
                    "vminsert",
                ][rng.below(8)];
                map.insert(key.to_owned(), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
        _ => {
            json!({"name": STRINGS[rng.below(STRINGS.len())], "trafficMode": STRINGS[rng.below(STRINGS.len())]})
        }
    }
}

/// Replace, delete or insert at a random place in the tree.
fn mutate_tree(rng: &mut Rng, value: &mut Value, depth: u32) {
    let descend = rng.below(4) != 0 && depth < 12;
    match value {
        Value::Object(map) if !map.is_empty() && descend => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(child) = map.get_mut(&key) {
                mutate_tree(rng, child, depth + 1);
            }
        }
        Value::Array(items) if !items.is_empty() && descend => {
            let i = rng.below(items.len());
            mutate_tree(rng, &mut items[i], depth + 1);
        }
        Value::Object(map) => match rng.below(3) {
            0 if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            1 => {
                let key = [
                    "extra",
                    "zones",
                    "spec",
                    "oldObject",
                    "deletionTimestamp",
                    "finalizers",
                ][rng.below(6)];
                map.insert(key.to_owned(), random_value(rng, depth));
            }
            _ => *value = random_value(rng, depth),
        },
        Value::Array(items) if rng.below(2) == 0 => {
            let copy = items.first().cloned().unwrap_or(Value::Null);
            items.push(copy);
        }
        _ => *value = random_value(rng, depth),
    }
}

fn bytes_mutation(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    match rng.below(4) {
        0 => {
            let cut = rng.below(body.len() + 1);
            body.truncate(cut);
        }
        1 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(body.len().max(1));
                if let Some(b) = body.get_mut(i) {
                    *b = (rng.next() & 0xff) as u8;
                }
            }
        }
        2 => {
            // Deep nesting: serde_json's recursion limit must answer, not overflow the stack.
            let depth = 200 + rng.below(5000);
            body = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        _ => body.extend_from_slice(b"garbage after the document"),
    }
    body
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_reviews_never_panic_and_memory_stays_bounded() {
    let _process = crate::common::own_process().await;
    let router = admission_router(Arc::new(AppState::new(Arc::new(Metrics::new()))));
    let seeds: Vec<Value> = vec![
        serde_json::from_str(include_str!("../../bench/review-3zones.json")).unwrap(),
        serde_json::from_str(include_str!("../../bench/review-3zones-dupzone.json")).unwrap(),
        crate::common::review(
            "CREATE",
            Some(crate::common::object("demo", crate::common::seed_spec())),
            None,
        ),
        crate::common::review(
            "UPDATE",
            Some(crate::common::object("demo", crate::common::seed_spec())),
            Some(crate::common::object(
                "demo",
                json!({"zones": [{"name": "zone-a"}, {"name": "zone-c"}]}),
            )),
        ),
    ];
    let seed = std::env::var("VMD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut answered, mut bad, mut iterations) = (0, 0, 0);
    let mut rss_after_warmup = 0;
    while iterations < 20_000 && started.elapsed() < Duration::from_secs(60) {
        let mut review = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(6) {
            mutate_tree(&mut rng, &mut review, 0);
        }
        let mut body = serde_json::to_vec(&review).unwrap();
        if rng.below(5) == 0 {
            body = bytes_mutation(&mut rng, body);
        }
        let path = if rng.below(2) == 0 {
            "/mutate"
        } else {
            "/validate"
        };
        let response = router
            .clone()
            .oneshot(Request::post(path).body(Body::from(body.clone())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let out = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        match status {
            StatusCode::OK => {
                let answer: Value = serde_json::from_slice(&out).unwrap();
                assert!(
                    answer["response"]["allowed"].is_boolean(),
                    "seed {seed}: {answer}"
                );
                answered += 1;
            }
            StatusCode::BAD_REQUEST => {
                let reason = String::from_utf8(out.to_vec()).unwrap();
                assert_eq!(
                    reason.trim_end().lines().count(),
                    1,
                    "seed {seed}: {reason:?}"
                );
                bad += 1;
            }
            other => panic!(
                "seed {seed}, iteration {iterations}: status {other} for {}",
                String::from_utf8_lossy(&body)
            ),
        }
        iterations += 1;
        if iterations == 500 {
            rss_after_warmup = rss_kib();
        }
    }
    assert!(iterations >= 2_000, "only {iterations} iterations in time");
    assert!(
        answered > 100 && bad > 100,
        "answered {answered}, bad {bad}: mutations too mild or too harsh"
    );
    let growth = rss_kib().saturating_sub(rss_after_warmup);
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB after warm-up");
}
