//! The stdio port: accepts stream connections, reads their header, hands them to the broker.
use std::time::Duration;

use super::broker::StreamBroker;
use super::header::read_header;
use crate::transport::StreamListener;

/// How long a new connection may take to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts stream connections forever.
pub async fn accept_streams(listener: StreamListener, broker: StreamBroker) {
    loop {
        let mut stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("stdio accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
                Ok(Ok(h)) => {
                    tracing::debug!("{} stream of exec {} arrived", h.kind, h.exec_id);
                    broker.offer(&h.exec_id, h.kind, h.token, stream);
                }
                Ok(Err(e)) => tracing::warn!("rejected a stdio stream: {e}"),
                Err(_) => {
                    tracing::warn!("rejected a stdio stream: no header in {HEADER_TIMEOUT:?}")
                }
            }
        });
    }
}
