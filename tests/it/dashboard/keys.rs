//! Keys: the binding table, and the commands that reach a real control channel.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::mpsc;
use tunnelscope::control::{Command, ControlHandle, Request};
use tunnelscope::dashboard::input::{handle, Effect, Panel, Popup, Ui};
use tunnelscope::dashboard::keys::{action_for, Action, Scope, BINDINGS};
use tunnelscope::dashboard::rows::SortKey;
use tunnelscope::dashboard::state::State;
use tunnelscope::event::{AdminState, Event};

use super::{at, backend, bid, busy_state, ch, key, open, snapshot, stats};

/// What the run loop does with an effect: commands go on the control channel.
fn press(k: KeyEvent, state: &State, ui: &mut Ui, control: &ControlHandle) -> Option<Effect> {
    let effect = handle(k, state, ui);
    if let Some(Effect::Send(cmd)) = &effect {
        control.try_send(cmd.clone()).unwrap();
    }
    effect
}

fn control() -> (ControlHandle, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel(8);
    (ControlHandle::new(tx), rx)
}

fn sent(rx: &mut mpsc::Receiver<Request>) -> Option<Command> {
    rx.try_recv().ok().map(|r| r.command)
}

fn on_backends() -> Ui {
    Ui {
        focus: Panel::Backends,
        ..Ui::default()
    }
}

#[test]
fn every_binding_in_the_table_produces_its_action() {
    for b in BINDINGS {
        for k in b.keys {
            let ev = KeyEvent::new(k.code, k.mods);
            let scopes: &[Scope] = if b.scope == Scope::Any {
                &[Scope::Overview, Scope::Detail]
            } else {
                std::slice::from_ref(&b.scope)
            };
            for scope in scopes {
                assert_eq!(
                    action_for(&ev, *scope),
                    Some(b.action),
                    "{k:?} in {scope:?}"
                );
            }
        }
    }
    // Shifted characters match however the terminal reports Shift.
    let shifted = KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT);
    assert_eq!(action_for(&shifted, Scope::Overview), Some(Action::Help));
    assert_eq!(action_for(&ch('z'), Scope::Overview), None);
}

#[test]
fn no_key_means_two_things_in_one_scope() {
    for scope in [
        Scope::Overview,
        Scope::Detail,
        Scope::Confirm,
        Scope::Help,
        Scope::Filter,
        Scope::Message,
    ] {
        let mut seen = Vec::new();
        for b in BINDINGS.iter().filter(|b| {
            b.scope == scope
                || (b.scope == Scope::Any && matches!(scope, Scope::Overview | Scope::Detail))
        }) {
            for k in b.keys {
                assert!(!seen.contains(k), "{k:?} bound twice in {scope:?}");
                seen.push(*k);
            }
        }
    }
}

#[test]
fn d_drains_an_active_backend_and_undrains_a_draining_one() {
    let (control, mut rx) = control();
    let mut s = busy_state();
    let mut ui = on_backends();
    press(ch('d'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), Some(Command::Drain(bid("127.0.0.1:9001"))));
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9001", AdminState::Draining, 1, 5)),
        at(4.0),
    );
    press(ch('d'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), Some(Command::Undrain(bid("127.0.0.1:9001"))));
}

#[test]
fn x_kills_with_1012_only_after_confirmation() {
    let (control, mut rx) = control();
    let s = busy_state();
    let mut ui = on_backends();
    press(key(KeyCode::Down), &s, &mut ui, &control);
    assert_eq!(press(ch('x'), &s, &mut ui, &control), None);
    assert!(matches!(ui.popup, Some(Popup::Confirm(_))));
    assert_eq!(sent(&mut rx), None, "nothing before the answer");
    press(ch('y'), &s, &mut ui, &control);
    match sent(&mut rx) {
        Some(Command::Kill { backend, code, .. }) => {
            assert_eq!(backend, bid("127.0.0.1:9002"));
            assert_eq!(code, 1012);
        }
        other => panic!("expected a kill, got {other:?}"),
    }
    assert_eq!(ui.popup, None);
}

#[test]
fn a_cancelled_kill_or_close_sends_nothing() {
    let (control, mut rx) = control();
    let s = busy_state();
    for cancel in [ch('n'), key(KeyCode::Esc)] {
        let mut ui = on_backends();
        press(ch('x'), &s, &mut ui, &control);
        press(cancel, &s, &mut ui, &control);
        assert_eq!(ui.popup, None);
        let mut ui = Ui::default();
        press(ch('c'), &s, &mut ui, &control);
        assert!(matches!(ui.popup, Some(Popup::Confirm(_))));
        press(cancel, &s, &mut ui, &control);
        assert_eq!(ui.popup, None);
    }
    assert_eq!(sent(&mut rx), None);
}

#[test]
fn c_closes_the_selected_tunnel_after_enter() {
    let (control, mut rx) = control();
    let s = busy_state();
    let mut ui = Ui::default();
    press(key(KeyCode::Down), &s, &mut ui, &control);
    press(ch('c'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), None);
    press(key(KeyCode::Enter), &s, &mut ui, &control);
    assert_eq!(
        sent(&mut rx),
        Some(Command::CloseTunnel {
            id: 8,
            code: 1012,
            reason: "closed by operator".into()
        })
    );
}

#[test]
fn e_enables_a_disabled_backend_at_once() {
    let (control, mut rx) = control();
    let mut s = busy_state();
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9001", AdminState::Disabled, 0, 5)),
        at(4.0),
    );
    let mut ui = on_backends();
    // Draining a disabled backend makes no sense; the footer says what to do instead.
    assert_eq!(press(ch('d'), &s, &mut ui, &control), None);
    assert!(ui
        .flash
        .as_ref()
        .is_some_and(|f| f.text.contains("e enables")));
    press(ch('e'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), Some(Command::Enable(bid("127.0.0.1:9001"))));
}

#[test]
fn q_quits_at_once_without_tunnels_and_asks_with_them() {
    let empty = State::from_snapshot(snapshot(), at(0.0));
    assert_eq!(
        handle(ch('q'), &empty, &mut Ui::default()),
        Some(Effect::Quit)
    );
    let s = busy_state();
    let mut ui = Ui::default();
    assert_eq!(handle(ch('q'), &s, &mut ui), None);
    assert_eq!(handle(ch('n'), &s, &mut ui), None);
    assert_eq!(handle(ch('q'), &s, &mut ui), None);
    assert_eq!(handle(ch('y'), &s, &mut ui), Some(Effect::Quit));
}

#[test]
fn tab_switches_panels_and_arrows_move_the_selection() {
    let s = busy_state();
    let mut ui = Ui::default();
    assert_eq!(ui.focus, Panel::Tunnels);
    handle(key(KeyCode::Down), &s, &mut ui);
    assert_eq!(ui.tunnel_sel, Some(8));
    handle(ch('k'), &s, &mut ui);
    assert_eq!(ui.tunnel_sel, Some(7));
    handle(key(KeyCode::Tab), &s, &mut ui);
    assert_eq!(ui.focus, Panel::Backends);
    handle(ch('j'), &s, &mut ui);
    handle(ch('G'), &s, &mut ui);
    assert_eq!(ui.backend_sel, 2);
}

#[test]
fn the_selection_follows_its_tunnel_when_rows_reorder() {
    let mut s = busy_state();
    let mut ui = Ui::default();
    handle(key(KeyCode::Down), &s, &mut ui);
    assert_eq!(ui.tunnel_sel, Some(8));
    // Sort by rate: tunnel 8 becomes busiest and moves to the top.
    while ui.sort != SortKey::Rate {
        handle(ch('s'), &s, &mut ui);
    }
    for i in 1..=8u64 {
        let ev = Event::FrameStats {
            id: 8,
            stats: stats((i * 100, 0), (0, 0), 3.0 + i as f64 * 0.25),
        };
        s.apply(&ev, at(3.0 + i as f64 * 0.25));
    }
    let rows = ui.rows(&s);
    assert_eq!(rows[0].tunnel.id, 8);
    assert_eq!(ui.selected_index(&rows), Some(0));
}

#[test]
fn the_filter_prompt_edits_live_keeps_on_enter_and_clears_on_esc() {
    let s = busy_state();
    let mut ui = Ui::default();
    for k in "/lobbyx".chars() {
        handle(ch(k), &s, &mut ui);
    }
    handle(key(KeyCode::Backspace), &s, &mut ui);
    assert_eq!(ui.filter, "lobby");
    // Only tunnel 7's path says "lobby", but both sent `x-room: lobby-7`: header
    // values match too.
    assert_eq!(ui.rows(&s).len(), 2);
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(ui.popup, None);
    assert_eq!(ui.filter, "lobby");
    handle(ch('/'), &s, &mut ui);
    handle(key(KeyCode::Esc), &s, &mut ui);
    assert_eq!(ui.filter, "");
}

#[test]
fn enter_on_a_backend_lists_its_tunnels() {
    let s = busy_state();
    let mut ui = on_backends();
    handle(key(KeyCode::Down), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(ui.focus, Panel::Tunnels);
    let rows = ui.rows(&s);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].tunnel.id, 8);
}

#[test]
fn p_pauses_the_tail_and_scrolling_back_freezes_it() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    open(&mut s, 1, "10.0.0.1:1", "/", "127.0.0.1:9001", 0.0);
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    handle(ch('p'), &s, &mut ui);
    assert!(ui.detail.as_ref().unwrap().frozen.is_some());
    handle(ch('p'), &s, &mut ui);
    assert!(ui.detail.as_ref().unwrap().frozen.is_none());
    handle(key(KeyCode::PageUp), &s, &mut ui);
    assert!(ui.detail.as_ref().unwrap().frozen.is_some());
    handle(key(KeyCode::Esc), &s, &mut ui);
    assert!(ui.detail.is_none());
}

#[test]
fn b_rebalances_the_selected_backends_pool_only_after_confirmation() {
    let (control, mut rx) = control();
    let s = busy_state();
    let mut ui = on_backends();
    assert_eq!(press(ch('b'), &s, &mut ui, &control), None);
    assert!(matches!(ui.popup, Some(Popup::Confirm(_))));
    assert_eq!(sent(&mut rx), None, "nothing before the answer");
    press(ch('y'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), Some(Command::Rebalance("chat".into())));
}

#[test]
fn b_on_a_pool_with_one_backend_in_service_says_so_and_sends_nothing() {
    let (control, mut rx) = control();
    let mut s = busy_state();
    for other in ["127.0.0.1:9002", "127.0.0.1:9003"] {
        s.apply(
            &Event::BackendState(backend(other, AdminState::Drained, 0, 3)),
            at(4.0),
        );
    }
    let mut ui = on_backends();
    press(ch('b'), &s, &mut ui, &control);
    assert_eq!(ui.popup, None);
    assert!(ui
        .flash
        .as_ref()
        .is_some_and(|f| f.error && f.text.contains("fewer than two")));
    assert_eq!(sent(&mut rx), None);
}

#[test]
fn shift_d_drains_and_closes_paced_after_confirmation() {
    let (control, mut rx) = control();
    let s = busy_state();
    let mut ui = on_backends();
    press(ch('D'), &s, &mut ui, &control);
    assert_eq!(sent(&mut rx), None, "nothing before the answer");
    press(key(KeyCode::Enter), &s, &mut ui, &control);
    assert_eq!(
        sent(&mut rx),
        Some(Command::DrainWithin {
            backend: bid("127.0.0.1:9001"),
            deadline: std::time::Duration::ZERO,
            close_rate: None,
        })
    );
}
