//! `make bench-peer`: the peer TTL cleaner alone (see `peer/mod.rs`) on a fresh control
//! plane. Prints its figures and writes `target/bench/peer.json`.
//!
//! `TESTMESH_PEER_NAMESPACES` sets how many namespaces expire (default 1,000).

#[path = "peer/mod.rs"]
mod peer;

use std::time::Instant;

use testmesh_testenv::ControlPlane;

#[tokio::main]
async fn main() {
    let namespaces: usize = std::env::var("TESTMESH_PEER_NAMESPACES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    let control_plane = ControlPlane::shared();
    let figures = peer::measure(control_plane, namespaces).await;
    figures.print();
    println!("bench took {:.0} s", started.elapsed().as_secs_f64());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).expect("target/bench");
    let path = format!("{dir}/peer.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&figures.to_json()).expect("json"),
    )
    .expect("write report");
    println!("written to {path}");
}
