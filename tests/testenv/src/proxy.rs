//! A TCP proxy on 127.0.0.1 that a test puts between an operator and the API server, so
//! it can cut the operator off for a while: at once, as a load balancer restart does (every
//! connection closed, new ones refused), or silently, as a network partition does (every
//! connection, old and new, stays open and carries nothing, so the client learns of it
//! only from its own timeouts). TLS passes through untouched: the API server's
//! certificate names 127.0.0.1, whatever the port.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::error::{Error, Result};

/// A running proxy; stops (and drops every connection) when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub address: SocketAddr,
    state: Arc<State>,
    accepting: AbortHandle,
}

struct State {
    /// While set, new connections are closed at once and none is forwarded.
    down: AtomicBool,
    /// While true, connections stay open and carry nothing; when it turns false, the
    /// connections it held are closed (as a partition's end finds them timed out), so
    /// nothing held is delivered late.
    stalled: watch::Sender<bool>,
    /// The forwarding tasks of the open connections.
    connections: Mutex<Vec<AbortHandle>>,
    /// Connections forwarded so far.
    forwarded: AtomicUsize,
}

impl Proxy {
    /// Starts forwarding a free port of 127.0.0.1 to `target`. Needs a Tokio runtime.
    pub async fn start(target: SocketAddr) -> Result<Proxy> {
        Proxy::start_to_any(vec![target]).await
    }

    /// Starts forwarding a free port of 127.0.0.1 to the first of `targets` that accepts
    /// the connection, as a Service reaches any live replica. Needs a Tokio runtime.
    pub async fn start_to_any(targets: Vec<SocketAddr>) -> Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::io("bind the proxy", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("the proxy's address", e))?;
        let state = Arc::new(State {
            down: AtomicBool::new(false),
            stalled: watch::Sender::new(false),
            connections: Mutex::default(),
            forwarded: AtomicUsize::new(0),
        });
        let accepting =
            tokio::spawn(accept(listener, targets.into(), state.clone())).abort_handle();
        Ok(Proxy {
            address,
            state,
            accepting,
        })
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        self.drop_connections();
    }

    /// Keeps every connection, open and new, open but forwards nothing, until
    /// [`Proxy::restore`] closes them.
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// How many connections it has forwarded: proof that the client goes through it.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Forwards new connections again; closes the ones a stall held.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
        self.state.stalled.send_replace(false);
    }

    fn drop_connections(&self) {
        let mut connections = self
            .state
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for connection in connections.drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.drop_connections();
    }
}

async fn accept(listener: TcpListener, targets: Arc<[SocketAddr]>, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        if state.down.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        state.forwarded.fetch_add(1, Ordering::SeqCst);
        let stalled = state.stalled.subscribe();
        let forwarding = tokio::spawn(forward(client, targets.clone(), stalled)).abort_handle();
        let mut connections = state
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.retain(|connection| !connection.is_finished());
        connections.push(forwarding);
    }
}

/// Forwards `client` to the first of `targets` that accepts, until either side closes or
/// a stall ends.
async fn forward(
    mut client: TcpStream,
    targets: Arc<[SocketAddr]>,
    mut stalled: watch::Receiver<bool>,
) {
    if *stalled.borrow_and_update() {
        return held_through_the_stall(&mut stalled).await;
    }
    for target in targets.iter() {
        if let Ok(mut upstream) = TcpStream::connect(target).await {
            let stall_began = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => false,
                began = stalled.wait_for(|stalled| *stalled) => began.is_ok(),
            };
            if stall_began {
                held_through_the_stall(&mut stalled).await;
            }
            return;
        }
    }
}

/// Waits, while the caller keeps its connections open and silent, until the stall ends.
async fn held_through_the_stall(stalled: &mut watch::Receiver<bool>) {
    let _ = stalled.wait_for(|stalled| !*stalled).await;
}

/// A copy of the kubeconfig at `kubeconfig` (JSON, as [`crate::ControlPlane`] writes
/// them) whose clusters' server is `address` (a proxy's), written to `into`.
pub fn kubeconfig_via(kubeconfig: &Path, address: SocketAddr, into: PathBuf) -> Result<PathBuf> {
    let original = std::fs::read_to_string(kubeconfig)
        .map_err(|e| Error::io(format!("read {}", kubeconfig.display()), e))?;
    let mut config: serde_json::Value = serde_json::from_str(&original).map_err(|e| {
        Error::io(
            format!("{} is not a JSON kubeconfig", kubeconfig.display()),
            e.into(),
        )
    })?;
    for cluster in config["clusters"].as_array_mut().into_iter().flatten() {
        cluster["cluster"]["server"] = serde_json::Value::String(format!("https://{address}"));
    }
    std::fs::write(&into, config.to_string())
        .map_err(|e| Error::io(format!("write {}", into.display()), e))?;
    Ok(into)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server; its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut answer = vec![0; 4];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[test]
    fn a_kubeconfig_through_the_proxy_names_the_proxy_as_every_server() {
        let dir = std::env::temp_dir().join(format!("proxy-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let original = dir.join("original");
        std::fs::write(
            &original,
            serde_json::json!({
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            })
            .to_string(),
        )
        .unwrap();
        let address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let via = kubeconfig_via(&original, address, dir.join("via")).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(via).unwrap()).unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40000"
        );
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority"],
            "ca.crt"
        );
        assert_eq!(config["users"][0]["user"]["token"], "t");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn it_forwards_cuts_refuses_while_cut_and_forwards_again() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.address).await.unwrap();
        assert_eq!(round_trip(&mut open).await.unwrap(), b"ping");
        assert_eq!(proxy.forwarded(), 1);
        proxy.cut();
        assert!(
            round_trip(&mut open).await.is_err(),
            "the open connection is dropped"
        );
        let mut refused = TcpStream::connect(proxy.address).await.unwrap();
        assert!(
            round_trip(&mut refused).await.is_err(),
            "new ones are closed while cut"
        );
        proxy.restore();
        let mut again = TcpStream::connect(proxy.address).await.unwrap();
        assert_eq!(round_trip(&mut again).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn a_stall_keeps_connections_open_and_silent_then_closes_them() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.address).await.unwrap();
        assert_eq!(round_trip(&mut open).await.unwrap(), b"ping");
        proxy.stall();
        let mut new = TcpStream::connect(proxy.address).await.unwrap();
        for stream in [&mut open, &mut new] {
            let silent = tokio::time::timeout(Duration::from_millis(300), round_trip(stream)).await;
            assert!(silent.is_err(), "no answer and no close while stalled");
        }
        proxy.restore();
        for stream in [&mut open, &mut new] {
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
                    .await
                    .expect("closed when the stall ends");
            assert!(
                rest.is_empty() || closed.is_err(),
                "nothing held is delivered: {rest:?}"
            );
        }
        let mut again = TcpStream::connect(proxy.address).await.unwrap();
        assert_eq!(round_trip(&mut again).await.unwrap(), b"ping");
    }
}
