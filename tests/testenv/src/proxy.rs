//! A TCP proxy on 127.0.0.1 that a test puts between an operator and the API server, so
//! it can cut the operator's connections and keep it cut off for a while, as a network
//! partition or a load balancer restart would. TLS passes through untouched: the API
//! server's certificate names 127.0.0.1, whatever the port.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::error::{Error, Result};

/// A running proxy; stops (and drops every connection) when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub address: SocketAddr,
    state: Arc<State>,
    accepting: AbortHandle,
}

#[derive(Default)]
struct State {
    /// While set, new connections are closed at once and none is forwarded.
    down: AtomicBool,
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
        let state = Arc::new(State::default());
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

    /// How many connections it has forwarded: proof that the client goes through it.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
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
        let forwarding = tokio::spawn(forward(client, targets.clone())).abort_handle();
        let mut connections = state
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.retain(|connection| !connection.is_finished());
        connections.push(forwarding);
    }
}

async fn forward(mut client: TcpStream, targets: Arc<[SocketAddr]>) {
    for target in targets.iter() {
        if let Ok(mut upstream) = TcpStream::connect(target).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
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
}
