//! `/livez`, `/readyz` and `/metrics` over plain HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once the controller's caches have synced.
    pub ready: AtomicBool,
    /// The operator's metrics.
    pub metrics: Metrics,
}

/// The response to one request (pure, for tests).
pub fn respond(path: &str, health: &Health) -> (StatusCode, String) {
    match path {
        "/livez" => (StatusCode::OK, "ok\n".into()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n".into()),
        "/metrics" => (StatusCode::OK, health.metrics.render()),
        _ => (StatusCode::NOT_FOUND, "not found: try /livez, /readyz or /metrics\n".into()),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(address: SocketAddr, health: Arc<Health>, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /livez, /readyz and /metrics");
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a health/metrics connection failed");
                    continue;
                }
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, body) = respond(request.uri().path(), &health);
                let content_type =
                    if request.uri().path() == "/metrics" { "text/plain; version=0.0.4" } else { "text/plain; charset=utf-8" };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                if let Ok(value) = content_type.parse() {
                    response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
                }
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "health/metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_cache_sync_and_livez_is_always_ok() {
        let health = Health::default();
        assert_eq!(respond("/livez", &health).0, StatusCode::OK);
        assert_eq!(respond("/readyz", &health).0, StatusCode::SERVICE_UNAVAILABLE);
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond("/readyz", &health).0, StatusCode::OK);
        assert!(respond("/metrics", &health).1.contains("sc_operator_reconciles_total 0"));
        assert_eq!(respond("/nope", &health).0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let health = Arc::new(Health::default());
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = probe.local_addr().expect("address");
        drop(probe);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(address, health, async move {
            let _ = stopped.await;
        }));
        let mut answer = String::new();
        for _ in 0..50 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                stream.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
                stream.read_to_string(&mut answer).await.expect("read");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop.send(());
        server.await.expect("joins").expect("serves");
    }
}
