//! The bytes to one instance: TCP, TLS for https://, one HTTP/1.1 request per
//! command, and the event stream's WebSocket. Every step is bounded in time, and
//! every failure is a sentence an operator can act on.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

use super::target::{tls_config, Auth, Target};

/// A connection to an instance, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Events = WebSocketStream<Box<dyn Io>>;

/// Connecting (TCP and TLS) may take this long.
const CONNECT: Duration = Duration::from_secs(5);
/// A request's answer, or the stream's 101, may take this long.
const ANSWER: Duration = Duration::from_secs(10);

async fn dial(t: &Target, auth: &Auth) -> Result<Box<dyn Io>, String> {
    let tcp = tokio::time::timeout(CONNECT, TcpStream::connect((t.host.as_str(), t.port)))
        .await
        .map_err(|_| format!("no answer within {} s", CONNECT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    if !t.tls {
        return Ok(Box::new(tcp));
    }
    let config = match &auth.tls {
        Some(c) => c.clone(),
        None => tls_config(None)?,
    };
    let name = rustls::pki_types::ServerName::try_from(t.host.clone())
        .map_err(|e| format!("{}: {e}", t.host))?;
    let tls = tokio::time::timeout(
        CONNECT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "no TLS handshake within 5 s".to_string())?
    .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(tls))
}

/// What a refusal means, for the operator.
fn refused(status: u16, body: &str) -> String {
    let said = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    match status {
        401 => "wrong or missing token (401): give the instance's [admin] token with \
                --token, --token-file or TUNNELSCOPE_TOKEN"
            .to_string(),
        _ if said.is_empty() => format!("answered {status}"),
        _ => format!("answered {status}: {said}"),
    }
}

/// `method path` (with `body`) and the token; the status and body, or why there is
/// none.
pub async fn request(
    t: &Target,
    auth: &Auth,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let io = dial(t, auth).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, &t.authority);
    if let Some(token) = &auth.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let answer = async {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(ANSWER, answer)
        .await
        .map_err(|_| format!("no answer within {} s", ANSWER.as_secs()))?
}

/// A command's answer as one line: what it did, or why not.
pub fn outcome(answer: Result<(u16, String), String>) -> Result<String, String> {
    let (status, body) = answer?;
    if !(200..300).contains(&status) {
        return Err(refused(status, &body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let said = match (v["outcome"].as_str(), v["tunnels"].as_u64()) {
        (Some(o), Some(n)) if n > 0 => format!("{} ({n} tunnels)", o.replace('_', " ")),
        (Some(o), _) => o.replace('_', " "),
        (None, _) => "done".to_string(),
    };
    // A reload says what it changed.
    Ok(match v["changes"]["summary"].as_str() {
        Some(summary) => format!("{said}: {summary}"),
        None => said,
    })
}

/// Opens `/api/events`.
pub async fn events(t: &Target, auth: &Auth) -> Result<Events, String> {
    let io = dial(t, auth).await?;
    let scheme = if t.tls { "wss" } else { "ws" };
    let mut req = format!("{scheme}://{}/api/events", t.authority)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(token) = &auth.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a valid header value".to_string())?;
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    match tokio::time::timeout(
        ANSWER,
        tokio_tungstenite::client_async_with_config(req, io, Some(config)),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {} s", ANSWER.as_secs())),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            Err(refused(resp.status().as_u16(), &body))
        }
        Ok(Err(e)) => Err(e.to_string()),
    }
}
