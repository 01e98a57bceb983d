//! Talking into the tunnel whose detail is open: `i` opens an input line whose
//! Enter sends a message toward the backend or the client (Tab switches), and
//! `h`/`H` hold or release what the client / the backend sends.
//!
//! The line is text unless it starts with a prefix: `hex:` (binary, from hex digits,
//! spaces allowed), `ping:` (a ping with the rest as payload), `close:CODE reason`
//! (closes the tunnel with that code), `text:` (text that would otherwise look like
//! a prefix).

use super::input::{Effect, Popup, Ui};
use super::keys::Action;
use super::state::State;
use crate::control::{Command, InjectKind};
use crate::event::{Dir, Side};

/// The input line of `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectPrompt {
    pub tunnel: crate::event::TunnelId,
    /// Where the message goes.
    pub to: Side,
    pub text: String,
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Message(InjectKind, Vec<u8>),
    Close(u16, String),
}

/// Reads an input line (see the module's documentation).
pub fn parse(line: &str) -> Result<Parsed, String> {
    if let Some(hex) = line.strip_prefix("hex:") {
        let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("hex: {digits:?} is not hex digits"));
        }
        if !digits.len().is_multiple_of(2) {
            return Err("hex: needs an even number of hex digits".into());
        }
        let bytes = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("hex: {digits:?} is not hex digits"))?;
        return Ok(Parsed::Message(InjectKind::Binary, bytes));
    }
    if let Some(payload) = line.strip_prefix("ping:") {
        return Ok(Parsed::Message(
            InjectKind::Ping,
            payload.as_bytes().to_vec(),
        ));
    }
    if let Some(rest) = line.strip_prefix("close:") {
        let (code, reason) = rest
            .trim_start()
            .split_once(' ')
            .unwrap_or((rest.trim(), ""));
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| crate::ws::close_code_may_be_sent(*c))
            .ok_or_else(|| {
                format!("close: {code:?} is not a code that may be sent (1000-1003, 1007-1014, 3000-4999)")
            })?;
        if reason.len() > crate::ws::MAX_CLOSE_REASON {
            return Err(format!(
                "close: the reason fits in {} bytes",
                crate::ws::MAX_CLOSE_REASON
            ));
        }
        return Ok(Parsed::Close(code, reason.to_string()));
    }
    let text = line.strip_prefix("text:").unwrap_or(line);
    Ok(Parsed::Message(InjectKind::Text, text.as_bytes().to_vec()))
}

/// `i`: opens the input line for the detail's live tunnel.
pub fn open(state: &State, ui: &mut Ui) {
    let Some(d) = &ui.detail else {
        return;
    };
    match state.find(d.id) {
        Some((_, Some(_))) => ui.flash("the tunnel has closed", state.now, true),
        Some((t, None)) if t.handshake.is_some() => {
            ui.popup = Some(Popup::Inject(InjectPrompt {
                tunnel: d.id,
                to: Side::Backend,
                text: String::new(),
            }))
        }
        _ => ui.flash("the tunnel is still handshaking", state.now, true),
    }
}

/// A bound key while the input line is open.
pub fn in_prompt(action: Action, state: &State, ui: &mut Ui) -> Option<Effect> {
    let Some(Popup::Inject(p)) = ui.popup.as_mut() else {
        return None;
    };
    match action {
        Action::SwitchTarget => {
            p.to = match p.to {
                Side::Backend => Side::Client,
                _ => Side::Backend,
            };
            None
        }
        Action::Confirm => {
            let (id, to) = (p.tunnel, p.to);
            let parsed = parse(&p.text).and_then(|parsed| match parsed {
                Parsed::Message(kind, payload) => {
                    kind.check(to, &payload)?;
                    Ok(Parsed::Message(kind, payload))
                }
                close => Ok(close),
            });
            let parsed = match parsed {
                Ok(p) => p,
                Err(why) => {
                    ui.flash(why, state.now, true);
                    return None;
                }
            };
            ui.popup = None;
            let toward = match to {
                Side::Client => "the client",
                _ => "the backend",
            };
            Some(Effect::Send(match parsed {
                Parsed::Message(kind, payload) => {
                    ui.flash(
                        format!(
                            "{} of {} bytes sent toward {toward}",
                            kind.name(),
                            payload.len()
                        ),
                        state.now,
                        false,
                    );
                    Command::Inject {
                        id,
                        to,
                        kind,
                        payload,
                    }
                }
                Parsed::Close(code, reason) => {
                    ui.flash(format!("closing with {code}"), state.now, false);
                    Command::CloseTunnel { id, code, reason }
                }
            }))
        }
        Action::Cancel => {
            ui.popup = None;
            None
        }
        _ => None,
    }
}

/// `h` / `H`: hold what `from` sends, or release it when held.
pub fn toggle_hold(state: &State, ui: &mut Ui, from: Side) -> Option<Effect> {
    let d = ui.detail.as_ref()?;
    let (t, closed) = state.find(d.id)?;
    if closed.is_some() {
        ui.flash("the tunnel has closed", state.now, true);
        return None;
    }
    let dir = match from {
        Side::Client => Dir::ClientToBackend,
        _ => Dir::BackendToClient,
    };
    let on = !t.held.iter().any(|h| h.dir == dir);
    let id = t.id;
    ui.flash(
        format!(
            "{} what the {from} sends",
            if on { "holding" } else { "releasing" }
        ),
        state.now,
        false,
    );
    Some(Effect::Send(Command::Hold { id, from, on }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_choose_the_kind_and_plain_lines_are_text() {
        assert_eq!(
            parse("hello"),
            Ok(Parsed::Message(InjectKind::Text, b"hello".to_vec()))
        );
        assert_eq!(
            parse("hex:00 ff 7f"),
            Ok(Parsed::Message(InjectKind::Binary, vec![0, 255, 127]))
        );
        assert_eq!(
            parse("ping:are you there"),
            Ok(Parsed::Message(InjectKind::Ping, b"are you there".to_vec()))
        );
        assert_eq!(
            parse("close:4001 try later"),
            Ok(Parsed::Close(4001, "try later".into()))
        );
        assert_eq!(parse("close:1000"), Ok(Parsed::Close(1000, String::new())));
        assert_eq!(
            parse("text:hex:not binary"),
            Ok(Parsed::Message(
                InjectKind::Text,
                b"hex:not binary".to_vec()
            ))
        );
        assert!(parse("hex:abc").unwrap_err().contains("even"));
        assert!(parse("hex:zz").is_err());
        assert!(parse("hex:é1").is_err(), "not sliced inside a character");
        assert!(parse("close:1005").is_err());
        assert!(parse("close:abc").is_err());
    }
}
