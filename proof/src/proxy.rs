//! A loopback TCP proxy that can be cut (listener closed, every open connection dropped: the
//! dependency behind it is unreachable, connections are refused) and restored on the same port.
//! It stands between the gateway and a dependency this process cannot stop (the shared
//! PostgreSQL server) or should not restart (its own receivers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, mut up_changes) = watch::channel(true);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = connections.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                match listener.take() {
                    Some(l) => {
                        tokio::select! {
                            accepted = l.accept() => {
                                if let Ok((client, _)) = accepted {
                                    if !*up_changes.borrow() {
                                        drop(client);
                                        listener = Some(l);
                                        continue;
                                    }
                                    let task = tokio::spawn(pipe(client, upstream));
                                    let mut list = tracked.lock().unwrap_or_else(|e| e.into_inner());
                                    list.retain(|h: &AbortHandle| !h.is_finished());
                                    list.push(task.abort_handle());
                                }
                                listener = Some(l);
                            }
                            changed = up_changes.changed() => {
                                if changed.is_err() { return; }
                                if *up_changes.borrow() { listener = Some(l); }
                                // else: dropped, so new connections are refused.
                            }
                        }
                    }
                    None => {
                        if up_changes.changed().await.is_err() {
                            return;
                        }
                        if *up_changes.borrow() {
                            // Rebind the same port (SO_REUSEADDR is set by tokio).
                            let mut tries = 0;
                            loop {
                                match TcpListener::bind(addr).await {
                                    Ok(l) => {
                                        listener = Some(l);
                                        break;
                                    }
                                    Err(e) if tries < 100 => {
                                        tries += 1;
                                        eprintln!("proxy {addr}: rebinding: {e}; retrying");
                                        tokio::time::sleep(std::time::Duration::from_millis(50))
                                            .await;
                                    }
                                    Err(e) => {
                                        eprintln!("proxy {addr}: cannot rebind: {e}");
                                        return;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(TcpProxy {
            addr,
            up,
            connections,
        })
    }

    /// Connections are refused and every open one is dropped.
    pub fn cut(&self) {
        let _ = self.up.send(false);
        for handle in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            handle.abort();
        }
    }

    pub fn restore(&self) {
        let _ = self.up.send(true);
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
