//! Unit tests of `parse.rs`.

use super::*;

#[test]
fn reloads_and_dns_answers_are_log_lines() {
    let note = |text: &str| match message(text) {
        Ok(Message::Note(line)) => line,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        note(r#"{"type":"config_reloaded","summary":"backends +1 -1"}"#),
        "config reloaded: backends +1 -1"
    );
    assert_eq!(
        note(
            r#"{"type":"resolved","pool":"app","name":"api:80","addrs":["10.0.0.1:80","10.0.0.2:80"],"error":null,"at":"x"}"#
        ),
        "dns api:80 (app): 10.0.0.1:80, 10.0.0.2:80"
    );
    assert_eq!(
        note(
            r#"{"type":"resolved","pool":"app","name":"api:80","addrs":["10.0.0.1:80"],"error":"timed out","at":"x"}"#
        ),
        "dns api:80 (app): timed out; keeping 1 addresses"
    );
    // A resolved message without its fields is refused, not guessed at.
    assert!(message(r#"{"type":"resolved"}"#).is_err());
}

#[test]
fn a_backend_state_reads_back() {
    let text = r#"{"type": "backend_state", "id": "app/127.0.0.1:19001", "pool": "app", "addr": "127.0.0.1:19001", "weight": 1, "backup": false, "admin": "draining", "health": "up", "active": 2, "total": 2, "failures": 0, "last_error": null, "version": 7}"#;
    match message(text).unwrap() {
        Message::Event(ev) => match *ev {
            Event::BackendState(b) => {
                assert_eq!(
                    (b.admin, b.active_tunnels, b.version),
                    (AdminState::Draining, 2, 7)
                );
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn listed_tunnels_past_their_handshake_read_back_as_such_and_huge_numbers_do_not_panic() {
    let text = r#"{"type":"snapshot","version":1,"instance":"east","started":null,
        "listeners":[],"backends":[],"totals":{"tunnels_total":1},"dns":[],
        "tunnels":[{"id":7,"client":"127.0.0.1:5000","listener":"l","route":"r","path":"/",
          "backend":"app/127.0.0.1:9001","opened":"2026-12-04T10:00:00.000Z",
          "subprotocol":"chat","extensions":null,"http":"h1","idle_timeout_s":1e300,
          "client_to_backend":{"frames":3,"messages":3,"bytes":30,"last_frame":null,"close":null,"violations":0},
          "backend_to_client":{"frames":3,"messages":3,"bytes":30,"last_frame":null,"close":null,"violations":0},
          "held":[]}]}"#;
    let Message::Snapshot(s, name) = message(text).unwrap() else {
        panic!("a snapshot")
    };
    assert_eq!(name.as_deref(), Some("east"));
    let t = &s.tunnels[0];
    let hs = t.handshake.as_ref().expect("past its handshake");
    assert_eq!(hs.subprotocol.as_deref(), Some("chat"));
    assert_eq!(
        t.idle_timeout, None,
        "an unrepresentable timeout is dropped"
    );
    assert_eq!(t.stats.client_to_backend.frames(), 3);
    for bad in [
        r#"{"type":"tunnel_opened","id":1,"at":"x"}"#,
        r#"{"type":"frame_samples","id":1,"samples":[{"seq":0,"at":"2026-12-04T10:00:00.000Z","dir":"client_to_backend","rsv":0,"opcode":1,"len":2,"preview":{"encoding":"hex","data":"é1"}}]}"#,
        r#"{"type":"snapshot","version":2}"#,
        "not json",
    ] {
        assert!(message(bad).is_err(), "{bad}");
    }
}

#[test]
fn parking_reads_back_from_events_and_listings_and_is_refused_without_its_flag() {
    for (text, want) in [
        (r#"{"type":"parked","id":4,"parked":true}"#, true),
        (r#"{"type":"parked","id":4,"parked":false}"#, false),
    ] {
        match message(text).unwrap() {
            Message::Event(ev) => match *ev {
                Event::Parked { id, parked } => assert_eq!((id, parked), (4, want)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert!(message(r#"{"type":"parked","id":4}"#).is_err());
    let listed = |parked: &str| {
        format!(
            r#"{{"type":"snapshot","version":1,"instance":null,"started":null,
            "listeners":[],"backends":[],"totals":{{"tunnels_total":1}},"dns":[],
            "tunnels":[{{"id":7,"client":"127.0.0.1:5000","listener":"l","route":"r","path":"/",
              "backend":null,"opened":"2026-12-04T10:00:00.000Z","subprotocol":null,
              "extensions":null,"http":"h1","idle_timeout_s":null,
              "client_to_backend":{{"frames":0,"messages":0,"bytes":0,"last_frame":null,"close":null,"violations":0}},
              "backend_to_client":{{"frames":0,"messages":0,"bytes":0,"last_frame":null,"close":null,"violations":0}},
              "held":[]{parked}}}]}}"#
        )
    };
    for (field, want) in [(r#","parked":true"#, true), ("", false)] {
        let Message::Snapshot(s, _) = message(&listed(field)).unwrap() else {
            panic!("a snapshot")
        };
        assert_eq!(s.tunnels[0].parked, want, "{field:?}");
    }
}
