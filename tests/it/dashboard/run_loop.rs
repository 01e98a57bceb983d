//! The run loop against real channels: events on a broadcast bus, keys on an mpsc,
//! commands on the control channel, frames drawn into a `TestBackend` that the test
//! can read while the loop runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::KeyEvent;
use ratatui::Terminal;
use tokio::sync::{broadcast, mpsc};
use tunnelscope::control::{Command, ControlHandle};
use tunnelscope::dashboard::{run, Exit, Options};
use tunnelscope::event::{AdminState, Event, Snapshot};

use super::{backend, ch, open_events, snapshot, stats};

use crate::common::screen::{wait_for, Shared};

struct Rig {
    screen: Shared,
    bus: broadcast::Sender<Event>,
    keys: mpsc::Sender<KeyEvent>,
    commands: mpsc::Receiver<tunnelscope::control::Request>,
    task: tokio::task::JoinHandle<Exit>,
}

fn start(bus_capacity: usize, snap: impl Fn() -> Snapshot + Send + 'static) -> Rig {
    let screen = Shared::new(100, 30);
    let (bus, events) = broadcast::channel(bus_capacity);
    let (keys, key_rx) = mpsc::channel(16);
    let (ctl_tx, commands) = mpsc::channel(16);
    let mut terminal = Terminal::new(screen.clone()).unwrap();
    let options = Options {
        tick: Duration::from_millis(20),
        ..Options::default()
    };
    let task = tokio::spawn(async move {
        match run(
            &mut terminal,
            events,
            snap,
            ControlHandle::new(ctl_tx),
            key_rx,
            options,
        )
        .await
        {
            Ok(exit) => exit,
            Err(never) => match never {},
        }
    });
    Rig {
        screen,
        bus,
        keys,
        commands,
        task,
    }
}

#[tokio::test]
async fn events_show_up_keys_act_and_q_then_y_quits() {
    let mut rig = start(64, snapshot);
    wait_for(&rig.screen, "the empty overview", |s| {
        s.contains("No tunnels yet")
    })
    .await;

    for ev in open_events(7, "10.1.2.3:50000", "/chat", "127.0.0.1:9001", 0.0) {
        rig.bus.send(ev).unwrap();
    }
    rig.bus
        .send(Event::FrameStats {
            id: 7,
            stats: stats((3, 2048), (4, 4096), 0.0),
        })
        .unwrap();
    rig.bus
        .send(Event::BackendState(backend(
            "127.0.0.1:9001",
            AdminState::Active,
            1,
            1,
        )))
        .unwrap();
    wait_for(&rig.screen, "the new tunnel", |s| {
        s.contains("10.1.2.3:50000") && s.contains("2.0 KiB")
    })
    .await;

    // Drain goes straight to the control channel.
    rig.keys
        .send(super::key(crossterm::event::KeyCode::Tab))
        .await
        .unwrap();
    rig.keys.send(ch('d')).await.unwrap();
    let req = tokio::time::timeout(Duration::from_secs(5), rig.commands.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.command, Command::Drain(super::bid("127.0.0.1:9001")));

    // Quitting with a tunnel open asks first.
    rig.keys.send(ch('q')).await.unwrap();
    wait_for(&rig.screen, "the quit question", |s| {
        s.contains("Quit tunnelscope?")
    })
    .await;
    assert!(!rig.task.is_finished());
    rig.keys.send(ch('y')).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), rig.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Quit);
}

#[tokio::test]
async fn a_lagging_bus_resyncs_from_the_snapshot() {
    // The first snapshot builds the state; a later one must be the resync's.
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let snap = move || {
        let mut s = snapshot();
        s.total_tunnels = if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            1
        } else {
            99
        };
        s
    };
    let rig = start(4, snap);
    wait_for(&rig.screen, "the first frame", |s| s.contains("1 total")).await;
    for i in 0..50u64 {
        rig.bus
            .send(Event::BackendState(backend(
                "127.0.0.1:9001",
                AdminState::Draining,
                i,
                i,
            )))
            .unwrap();
    }
    wait_for(&rig.screen, "the resync marker", |s| {
        s.contains("resynced ×1")
    })
    .await;
    assert!(rig.screen.text().contains("99 total"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    drop(rig.bus);
    let exit = tokio::time::timeout(Duration::from_secs(5), rig.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::ProxyStopped);
}

/// `R` asks the proxy what a reload would change; the confirmation shows it, and
/// only `y` sends the reload. A file that would be refused is said so instead.
#[tokio::test]
async fn r_shows_what_a_reload_would_change_and_y_reloads() {
    let mut rig = start(64, snapshot);
    wait_for(&rig.screen, "the overview", |s| {
        s.contains("No tunnels yet")
    })
    .await;

    rig.keys.send(ch('R')).await.unwrap();
    assert_eq!(
        next_command(&mut rig.commands).await,
        Command::PreviewReload
    );
    let diff = tunnelscope::event::ConfigDiff {
        backends_added: vec![super::bid("127.0.0.1:9009")],
        ..Default::default()
    };
    rig.bus.send(Event::ReloadPreview(Ok(diff))).unwrap();
    wait_for(&rig.screen, "the reload question with its changes", |s| {
        s.contains("Reload the config file?") && s.contains("added chat/127.0.0.1:9009")
    })
    .await;
    rig.keys.send(ch('y')).await.unwrap();
    assert_eq!(next_command(&mut rig.commands).await, Command::Reload);

    rig.keys.send(ch('R')).await.unwrap();
    assert_eq!(
        next_command(&mut rig.commands).await,
        Command::PreviewReload
    );
    rig.bus
        .send(Event::ReloadPreview(Err(
            "tunnelscope.toml:3:1: key pool: broken".into(),
        )))
        .unwrap();
    wait_for(&rig.screen, "the refusal", |s| s.contains("reload refused")).await;
    assert!(rig.commands.try_recv().is_err(), "nothing more was sent");
    rig.task.abort();
}

async fn next_command(rx: &mut mpsc::Receiver<tunnelscope::control::Request>) -> Command {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .command
}
