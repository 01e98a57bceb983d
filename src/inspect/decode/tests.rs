use super::*;
use proptest::prelude::*;
use serde_json::json;

fn labels(d: &Decoded) -> Vec<&str> {
    d.parts.iter().map(|(l, _)| l.as_str()).collect()
}

#[test]
fn socket_io_events_show_namespace_ack_and_event_name() {
    let (d, decoded) = detect(br#"42/admin,17["order",{"id":42}]"#, false).unwrap();
    assert_eq!(d, Decoder::SocketIo);
    assert_eq!(
        labels(&decoded),
        ["Socket.IO EVENT · namespace /admin · ack 17 \"order\""]
    );
    assert_eq!(decoded.parts[0].1, json!(["order", {"id": 42}]));

    let d = Decoder::SocketIo.decode(br#"0{"sid":"abc","pingInterval":25000}"#, false);
    assert_eq!(labels(&d.unwrap()), ["Engine.IO open"]);
    assert_eq!(labels(&detect(b"2", false).unwrap().1), ["Engine.IO ping"]);
    assert_eq!(
        labels(&detect(b"3probe", false).unwrap().1),
        ["Engine.IO pong probe"]
    );
    let binary = detect(br#"451-["upload",{"_placeholder":true,"num":0}]"#, false).unwrap();
    assert_eq!(
        labels(&binary.1),
        ["Socket.IO BINARY_EVENT · 1 binary attachments \"upload\""]
    );
    assert_eq!(
        labels(&detect(b"40", false).unwrap().1),
        ["Socket.IO CONNECT"]
    );
}

#[test]
fn text_that_only_looks_like_socket_io_is_left_alone() {
    for text in [
        &b"42"[..],
        b"4 apples",
        b"7",
        b"0 not json",
        b"hello",
        b"42[1,2]",
        b"2x",
    ] {
        assert!(
            Decoder::SocketIo.decode(text, false).is_none(),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    assert!(Decoder::SocketIo.decode(b"2", true).is_none(), "binary");
}

#[test]
fn signalr_json_records_are_split_and_named() {
    let payload = b"{\"type\":1,\"target\":\"Send\",\"invocationId\":\"7\",\"arguments\":[\"hi\"]}\x1e{\"type\":6}\x1e";
    let (d, decoded) = detect(payload, false).unwrap();
    assert_eq!(d, Decoder::SignalR);
    assert_eq!(
        labels(&decoded),
        ["SignalR Invocation \"Send\" · invocation 7", "SignalR Ping"]
    );
    let hs = Decoder::SignalR.decode(b"{\"protocol\":\"json\",\"version\":1}\x1e", false);
    assert_eq!(labels(&hs.unwrap()), ["SignalR handshake request"]);
    assert!(
        Decoder::SignalR.decode(b"{\"type\":1}", false).is_none(),
        "no separator"
    );
    assert!(Decoder::SignalR
        .decode(b"{\"type\":9}\x1e", false)
        .is_none());
    let lines = detect(payload, false).unwrap().1.lines();
    assert_eq!(lines[0], "── SignalR Invocation \"Send\" · invocation 7");
    assert!(
        lines.contains(&"  \"target\": \"Send\",".to_string()),
        "{lines:?}"
    );
}

fn msgpack_bytes(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

#[test]
fn signalr_messagepack_records_are_length_prefixed() {
    use rmpv::Value as M;
    let record = msgpack_bytes(&M::Array(vec![
        1.into(),
        M::Map(vec![]),
        M::Nil,
        "Send".into(),
        M::Array(vec!["hi".into()]),
    ]));
    let mut payload = vec![record.len() as u8];
    payload.extend(&record);
    payload.push(record.len() as u8);
    payload.extend(&record);
    let (d, decoded) = detect(&payload, true).unwrap();
    assert_eq!(d, Decoder::SignalR);
    assert_eq!(
        labels(&decoded),
        ["SignalR Invocation", "SignalR Invocation"]
    );
    assert_eq!(decoded.parts[0].1[3], json!("Send"));
    payload.pop();
    assert!(
        Decoder::SignalR.decode(&payload, true).is_none(),
        "cut short"
    );
}

#[test]
fn messagepack_maps_become_json_with_binary_and_odd_keys_spelled_out() {
    use rmpv::Value as M;
    let bytes = msgpack_bytes(&M::Map(vec![
        ("id".into(), 42.into()),
        ("ok".into(), true.into()),
        ("blob".into(), M::Binary(vec![1, 2, 255])),
        (7.into(), M::F64(1.5)),
        ("neg".into(), (-3).into()),
    ]));
    let (d, decoded) = detect(&bytes, true).unwrap();
    assert_eq!(d, Decoder::MsgPack);
    assert_eq!(
        decoded.parts[0].1,
        json!({"id": 42, "ok": true, "blob": "<3 bytes: 0102ff>", "7": 1.5, "neg": -3})
    );
    // A scalar is valid MessagePack but says nothing: not claimed automatically.
    assert!(detect(&msgpack_bytes(&5.into()), true).is_none());
    assert!(Decoder::MsgPack
        .decode(&msgpack_bytes(&5.into()), true)
        .is_some());
    // Trailing bytes: not one MessagePack value.
    let mut extra = bytes.clone();
    extra.push(0xc0);
    assert!(Decoder::MsgPack.decode(&extra, true).is_none());
}

#[test]
fn cbor_is_decoded_when_messagepack_does_not_fit() {
    let value = ciborium::Value::Map(vec![
        ("temp".into(), ciborium::Value::Float(21.5)),
        ("tags".into(), ciborium::Value::Array(vec!["a".into()])),
        (
            "when".into(),
            ciborium::Value::Tag(1, Box::new(ciborium::Value::Integer(1_700_000_000.into()))),
        ),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&value, &mut bytes).unwrap();
    let (d, decoded) = detect(&bytes, true).unwrap();
    assert_eq!(d, Decoder::Cbor);
    assert_eq!(
        decoded.parts[0].1,
        json!({"temp": 21.5, "tags": ["a"], "when": {"$tag": 1, "value": 1_700_000_000}})
    );
}

#[test]
fn hostile_payloads_are_refused_without_panic_or_allocation() {
    // An array claiming four billion elements, with none following.
    assert!(Decoder::MsgPack
        .decode(&[0xdd, 0xff, 0xff, 0xff, 0xff], true)
        .is_none());
    assert!(Decoder::Cbor
        .decode(&[0x9a, 0xff, 0xff, 0xff, 0xff], true)
        .is_none());
    // Nesting far deeper than MAX_DEPTH.
    assert!(Decoder::MsgPack.decode(&[0x91; 10_000], true).is_none());
    assert!(Decoder::Cbor.decode(&[0x81; 10_000], true).is_none());
    // A varint that never ends, and a record longer than the message.
    assert!(Decoder::SignalR.decode(&[0xff; 9], true).is_none());
    assert!(Decoder::SignalR.decode(&[0x7f, 0x91], true).is_none());
}

proptest! {
    #[test]
    fn no_decoder_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), binary: bool) {
        for d in Decoder::ALL {
            let _ = d.decode(&bytes, binary);
        }
        let _ = detect(&bytes, binary);
    }
}
