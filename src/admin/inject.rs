//! An operator talking into a tunnel through the API:
//! `POST /api/tunnels/{id}/send?to=client|backend&type=text|binary|ping` with the
//! payload as the body (`type=close&code=N` closes the tunnel with that code, the
//! body its reason), and `POST /api/tunnels/{id}/hold?from=client|backend` /
//! `.../release?from=...`.

use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::control::{Command, InjectKind, MAX_INJECT_BYTES};
use crate::event::{Side, TunnelId};

use super::handlers::control;
use super::reply::{self, Body};
use super::routes::{close_code, percent_decode, Miss};
use super::Api;

/// What `send` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Send {
    Message(Side, InjectKind),
    Close(u16),
}

/// `to=client|backend&type=text|binary|ping|close&code=N`.
pub fn send_params(query: Option<&str>) -> Result<Send, Miss> {
    let (mut to, mut kind, mut code) = (None, "text".to_string(), None);
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "to" => to = Some(side(&value, "to")?),
            "type" => kind = value,
            "code" => code = Some(close_code(&value)?),
            other => return Err(Miss::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    if kind == "close" {
        return Ok(Send::Close(code.unwrap_or(crate::ws::close::NORMAL)));
    }
    let kind = InjectKind::parse(&kind).ok_or_else(|| {
        Miss::BadRequest(format!(
            "type {kind:?} is not one of text, binary, ping, close"
        ))
    })?;
    let to =
        to.ok_or_else(|| Miss::BadRequest("say where it goes: to=client or to=backend".into()))?;
    Ok(Send::Message(to, kind))
}

/// `from=client|backend`.
pub fn hold_params(query: Option<&str>) -> Result<Side, Miss> {
    let mut from = None;
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "from" => from = Some(side(&value, "from")?),
            other => return Err(Miss::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    from.ok_or_else(|| Miss::BadRequest("say whose messages: from=client or from=backend".into()))
}

fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Miss> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(&value.replace('+', " "))
                .ok_or_else(|| Miss::BadRequest(format!("{key}: malformed %-escape")))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

fn side(value: &str, key: &str) -> Result<Side, Miss> {
    match value {
        "client" => Ok(Side::Client),
        "backend" => Ok(Side::Backend),
        other => Err(Miss::BadRequest(format!(
            "{key}={other:?}: say client or backend"
        ))),
    }
}

/// `POST /api/tunnels/{id}/send`.
pub async fn send(body: Incoming, query: Option<&str>, api: &Api, id: TunnelId) -> Response<Body> {
    let params = match send_params(query) {
        Ok(p) => p,
        Err(miss) => return miss.reply(),
    };
    let payload = match Limited::new(body, MAX_INJECT_BYTES).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an injected message has at most {MAX_INJECT_BYTES} bytes"),
            )
        }
    };
    let command = match params {
        Send::Close(code) => {
            let reason = String::from_utf8_lossy(&payload);
            if reason.len() > crate::ws::MAX_CLOSE_REASON {
                return reply::error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a close reason fits in {} bytes, not {}",
                        crate::ws::MAX_CLOSE_REASON,
                        reason.len()
                    ),
                );
            }
            Command::CloseTunnel {
                id,
                code,
                reason: reason.into_owned(),
            }
        }
        Send::Message(to, kind) => {
            if let Err(why) = kind.check(to, &payload) {
                return reply::error(StatusCode::BAD_REQUEST, why);
            }
            Command::Inject {
                id,
                to,
                kind,
                payload,
            }
        }
    };
    control(api, command).await
}

/// `POST /api/tunnels/{id}/hold` (`on`) or `/release`.
pub async fn hold(query: Option<&str>, api: &Api, id: TunnelId, on: bool) -> Response<Body> {
    match hold_params(query) {
        Ok(from) => control(api, Command::Hold { id, from, on }).await,
        Err(miss) => miss.reply(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_needs_a_side_and_a_known_type() {
        assert_eq!(
            send_params(Some("to=client&type=binary")),
            Ok(Send::Message(Side::Client, InjectKind::Binary))
        );
        assert_eq!(
            send_params(Some("to=backend")),
            Ok(Send::Message(Side::Backend, InjectKind::Text))
        );
        assert_eq!(
            send_params(Some("type=close&code=4001")),
            Ok(Send::Close(4001))
        );
        for bad in [
            "type=text",
            "to=proxy",
            "to=client&type=pong",
            "type=close&code=1005",
            "x=1",
        ] {
            assert!(
                matches!(send_params(Some(bad)), Err(Miss::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hold_names_whose_messages() {
        assert_eq!(hold_params(Some("from=backend")), Ok(Side::Backend));
        assert!(hold_params(None).is_err());
        assert!(hold_params(Some("from=both")).is_err());
    }
}
