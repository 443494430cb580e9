use bytes::Bytes;
use serde_json::json;

use crate::frame::opcode::BINARY as OP_BINARY;
use crate::*;

fn text(frame: &Frame) -> &str {
    frame.as_text().expect("a text frame")
}

fn p(v: serde_json::Value) -> Payload {
    Payload::from(v)
}

/// A frame is framed once: its wire bytes are the WebSocket header for
/// its payload's length (every length encoding) followed by the payload,
/// and the accessors other than `wire` are about the payload.
#[test]
fn frames_carry_their_websocket_header() {
    for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10), (200_000, 10)] {
        let raw = Frame::raw(OP_BINARY, &vec![7; len]);
        assert_eq!((raw.len(), raw.wire_len()), (len, len + header), "{len}");
        assert_eq!(raw.wire()[0], 0x82);
        assert_eq!(&raw.wire()[header..], raw.as_bytes());
        assert_eq!(raw.bytes(), raw.as_bytes());
    }
    let text = Serializer::V2
        .encode(&Outgoing::Broadcast {
            topic: "t",
            event: "e",
            payload: &Payload::json(&"x".repeat(200)).unwrap(),
            position: None,
        })
        .unwrap();
    let len = text.len();
    assert_eq!(text.wire()[..4], [0x81, 126, (len >> 8) as u8, len as u8]);
    assert!(text.as_text().unwrap().starts_with(r#"[null,null,"t","e","xx"#));
}

#[test]
fn negotiates_like_phoenix() {
    assert_eq!(Serializer::negotiate(None), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("1.0.0")), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("1.0.7")), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("2.0.0")), Some(Serializer::V2));
    assert_eq!(Serializer::negotiate(Some("2.0.3")), Some(Serializer::V2));
    for refused in ["2.1.0", "3.0.0", "abc", "", "2", "2.0", "2.0.x", "1.1.0", "0.9.0"] {
        assert_eq!(Serializer::negotiate(Some(refused)), None, "{refused}");
    }
}

#[test]
fn decodes_v2_arrays() {
    let m = Serializer::V2.decode_text(br#"["3","4","comments:42","comment:add",{"content":"first!"}]"#).unwrap();
    assert_eq!(m.join_ref.as_deref(), Some("3"));
    assert_eq!(m.msg_ref.as_deref(), Some("4"));
    assert_eq!(m.topic, "comments:42");
    assert_eq!(m.event, "comment:add");
    assert_eq!(m.payload.as_json(), Some(r#"{"content":"first!"}"#));

    let hb = Serializer::V2.decode_text(br#"[null,"5","phoenix","heartbeat",{}]"#).unwrap();
    assert_eq!(hb.join_ref, None);
    assert_eq!(hb.msg_ref.as_deref(), Some("5"));
}

#[test]
fn v2_accepts_any_json_payload_and_extra_elements() {
    for payload in [r#""s""#, "[1,2]", "null", "42", r#"{"a":{"b":[null]}}"#] {
        let frame = format!(r#"["1","2","t","e",{payload},"extra",{{}}]"#);
        let m = Serializer::V2.decode_text(frame.as_bytes()).unwrap();
        assert_eq!(m.payload.as_json(), Some(payload));
    }
}

#[test]
fn v2_rejects_malformed_frames() {
    for bad in [
        &b"this is not json"[..],
        b"",
        b"{}",
        br#"["1","2","t","e"]"#,
        br#"["1","2","t"]"#,
        br#"[1,"2","t","e",{}]"#,
        br#"["1",2,"t","e",{}]"#,
        br#"["1","2",3,"e",{}]"#,
        br#"["1","2","t",null,{}]"#,
        br#"["1","2","t","e",{}"#,
        b"\xff\xfe",
        br#"["1","2","t","e",{}] trailing"#,
    ] {
        assert!(Serializer::V2.decode_text(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn decodes_v1_objects() {
    let m = Serializer::V1
        .decode_text(br#"{"topic":"comments:1","event":"phx_join","payload":{},"ref":"2","join_ref":"2"}"#)
        .unwrap();
    assert_eq!((m.join_ref.as_deref(), m.msg_ref.as_deref()), (Some("2"), Some("2")));
    let m = Serializer::V1.decode_text(br#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null}"#).unwrap();
    assert_eq!((m.join_ref, m.msg_ref), (None, None));
}

#[test]
fn v1_requires_topic_event_payload_and_ref() {
    for bad in [
        &br#"{"event":"e","payload":{},"ref":"1"}"#[..],
        br#"{"topic":"t","payload":{},"ref":"1"}"#,
        br#"{"topic":"t","event":"e","ref":"1"}"#,
        br#"{"topic":"t","event":"e","payload":{}}"#,
        br#"["1","1","t","e",{}]"#,
        br#"{"topic":1,"event":"e","payload":{},"ref":"1"}"#,
    ] {
        assert!(Serializer::V1.decode_text(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn encodes_every_v2_frame_kind_with_phoenix_null_rules() {
    let resp = p(json!({"hey": "there"}));
    let reply =
        Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("4"), topic: "c:1", status: "ok", response: &resp };
    assert_eq!(
        text(&Serializer::V2.encode(&reply).unwrap()),
        r#"["3","4","c:1","phx_reply",{"status":"ok","response":{"hey":"there"}}]"#
    );
    let empty = Payload::empty();
    let hb = Outgoing::Reply { join_ref: None, msg_ref: Some("5"), topic: "phoenix", status: "ok", response: &empty };
    assert_eq!(
        text(&Serializer::V2.encode(&hb).unwrap()),
        r#"[null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]"#
    );
    let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "notice", payload: &resp, position: None };
    assert_eq!(text(&Serializer::V2.encode(&push).unwrap()), r#"["3",null,"c:1","notice",{"hey":"there"}]"#);
    let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload: &resp, position: None };
    assert_eq!(text(&Serializer::V2.encode(&bc).unwrap()), r#"[null,null,"c:1","new",{"hey":"there"}]"#);
    let close = Outgoing::Control { join_ref: Some("3"), topic: "c:1", event: PHX_CLOSE, payload: &empty };
    assert_eq!(text(&Serializer::V2.encode(&close).unwrap()), r#"["3","3","c:1","phx_close",{}]"#);
}

#[test]
fn encodes_v1_frames_without_join_ref() {
    let resp = p(json!({}));
    let reply =
        Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("4"), topic: "c:1", status: "error", response: &resp };
    assert_eq!(
        text(&Serializer::V1.encode(&reply).unwrap()),
        r#"{"topic":"c:1","event":"phx_reply","payload":{"status":"error","response":{}},"ref":"4"}"#
    );
    let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload: &resp, position: None };
    assert_eq!(text(&Serializer::V1.encode(&bc).unwrap()), r#"{"topic":"c:1","event":"new","payload":{},"ref":null}"#);
    let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "n", payload: &resp, position: None };
    assert_eq!(text(&Serializer::V1.encode(&push).unwrap()), r#"{"topic":"c:1","event":"n","payload":{},"ref":null}"#);
    let err = Outgoing::Control { join_ref: Some("2"), topic: "c:1", event: PHX_ERROR, payload: &resp };
    assert_eq!(
        text(&Serializer::V1.encode(&err).unwrap()),
        r#"{"topic":"c:1","event":"phx_error","payload":{},"ref":"2"}"#
    );
    let err = Outgoing::Control { join_ref: None, topic: "c:1", event: PHX_ERROR, payload: &resp };
    assert_eq!(
        text(&Serializer::V1.encode(&err).unwrap()),
        r#"{"topic":"c:1","event":"phx_error","payload":{},"ref":null}"#
    );
}

#[test]
fn escapes_strings() {
    let resp = Payload::empty();
    let reply = Outgoing::Reply {
        join_ref: Some("\"q\""),
        msg_ref: Some("\u{1F600}"),
        topic: "a\\b\n",
        status: "ok",
        response: &resp,
    };
    let frame = Serializer::V2.encode(&reply).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(text(&frame)).unwrap();
    assert_eq!(parsed, json!(["\"q\"", "\u{1F600}", "a\\b\n", "phx_reply", {"status": "ok", "response": {}}]));
}

#[test]
fn binary_frames_match_the_worked_example() {
    let frame =
        [0x00, 0x01, 0x01, 0x06, 0x04, 0x33, 0x39, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x61, 0x62, 0x6c, 0x6f, 0x62, 1, 2, 3];
    let m = Serializer::V2.decode_binary(&frame).unwrap();
    assert_eq!((m.join_ref.as_deref(), m.msg_ref.as_deref()), (Some("3"), Some("9")));
    assert_eq!((m.topic.as_str(), m.event.as_str()), ("room:a", "blob"));
    assert_eq!(m.payload, Payload::Binary(Bytes::from_static(&[1, 2, 3])));

    let resp = Payload::Binary(Bytes::from_static(&[0xff]));
    let reply =
        Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("9"), topic: "room:a", status: "ok", response: &resp };
    let out = Serializer::V2.encode(&reply).unwrap();
    assert_eq!(out.kind(), FrameKind::Binary);
    assert_eq!(
        out.as_bytes(),
        [0x01, 0x01, 0x01, 0x06, 0x02, 0x33, 0x39, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x61, 0x6f, 0x6b, 0xff]
    );
}

#[test]
fn binary_push_and_broadcast_layouts() {
    let data = Payload::Binary(Bytes::from_static(b"xy"));
    let push = Outgoing::Push { join_ref: Some("3"), topic: "t", event: "e", payload: &data, position: None };
    assert_eq!(Serializer::V2.encode(&push).unwrap().as_bytes(), b"\x00\x01\x01\x013texy");
    let bc = Outgoing::Broadcast { topic: "t", event: "e", payload: &data, position: None };
    assert_eq!(Serializer::V2.encode(&bc).unwrap().as_bytes(), b"\x02\x01\x01texy");
    assert_eq!(Serializer::V1.encode(&bc), Err(EncodeError::BinaryNotSupported));
    let long = "x".repeat(256);
    let bc = Outgoing::Broadcast { topic: &long, event: "e", payload: &data, position: None };
    assert_eq!(Serializer::V2.encode(&bc), Err(EncodeError::FieldTooLong { field: "topic", len: 256 }));
}

#[test]
fn rejects_malformed_binary_frames() {
    assert_eq!(Serializer::V1.decode_binary(&[0, 0, 0, 0, 0]), Err(DecodeError::BinaryNotSupported));
    for bad in [&[][..], &[0, 0, 0], &[1, 0, 0, 0, 0], &[2, 0, 0], &[0, 5, 0, 0, 0, b'a'], &[0, 1, 0, 0, 0, 0xff]] {
        assert!(Serializer::V2.decode_binary(bad).is_err(), "{bad:?}");
    }
    let empty_refs = Serializer::V2.decode_binary(&[0, 0, 0, 1, 1, b't', b'e']).unwrap();
    assert_eq!((empty_refs.join_ref, empty_refs.msg_ref), (None, None));
}

fn msg(join_ref: Option<&str>, msg_ref: Option<&str>, topic: &str, event: &str, payload: Payload) -> Message {
    Message {
        join_ref: join_ref.map(str::to_owned),
        msg_ref: msg_ref.map(str::to_owned),
        topic: topic.to_owned(),
        event: event.to_owned(),
        payload,
    }
}

/// What a client encodes, the server decodes unchanged: both
/// serializers, JSON and binary, refs present or not.
#[test]
fn client_frames_round_trip_through_the_server_decoder() {
    let json = p(json!({"content": "first \"quoted\" \u{1F600}"}));
    let bytes = Payload::Binary(Bytes::from_static(&[0, 1, 255]));
    let cases = [
        msg(Some("1"), Some("1"), "comments:42", PHX_JOIN, json.clone()),
        msg(None, Some("7"), PHOENIX_TOPIC, HEARTBEAT, Payload::empty()),
        msg(Some("3"), None, "room:a", "e", json.clone()),
    ];
    for serializer in Serializer::ALL {
        for m in &cases {
            let ClientFrame::Text(text) = serializer.encode_client(m).unwrap() else { panic!("text") };
            assert_eq!(&serializer.decode_text(text.as_bytes()).unwrap(), m, "{serializer:?} {text}");
        }
    }
    let ClientFrame::Text(v2) = Serializer::V2.encode_client(&cases[1]).unwrap() else { panic!() };
    assert_eq!(v2, r#"[null,"7","phoenix","heartbeat",{}]"#);
    let ClientFrame::Text(v1) = Serializer::V1.encode_client(&cases[0]).unwrap() else { panic!() };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&v1).unwrap(),
        json!({"topic": "comments:42", "event": "phx_join", "payload": {"content": "first \"quoted\" \u{1F600}"}, "ref": "1", "join_ref": "1"})
    );

    let push = msg(Some("3"), Some("9"), "room:a", "blob", bytes.clone());
    let ClientFrame::Binary(frame) = Serializer::V2.encode_client(&push).unwrap() else { panic!("binary") };
    // phoenix.js's layout: kind 0, four lengths, the fields, the payload
    assert_eq!(&frame[..], b"\x00\x01\x01\x06\x0439room:ablob\x00\x01\xff");
    assert_eq!(Serializer::V2.decode_binary(&frame).unwrap(), push);
    assert_eq!(Serializer::V1.encode_client(&push), Err(EncodeError::BinaryNotSupported));
    let long = msg(None, None, &"t".repeat(256), "e", bytes);
    assert_eq!(Serializer::V2.encode_client(&long), Err(EncodeError::FieldTooLong { field: "topic", len: 256 }));
}

/// Every kind of server frame, encoded by the server's serializer, reads
/// back as a client sees it: replies unwrapped, V1 without join_ref.
#[test]
fn server_frames_round_trip_through_the_client_decoder() {
    let json = p(json!({"hey": "there"}));
    let bytes = Payload::Binary(Bytes::from_static(b"xyz"));
    let decode = |serializer: Serializer, out: &Outgoing<'_>| {
        let frame = serializer.encode(out).unwrap();
        match frame.kind() {
            FrameKind::Text => serializer.decode_server_text(frame.as_bytes()).unwrap(),
            FrameKind::Binary => serializer.decode_server_binary(frame.as_bytes()).unwrap(),
        }
    };
    for (serializer, payload) in [(Serializer::V2, &json), (Serializer::V2, &bytes), (Serializer::V1, &json)] {
        let jr = (serializer == Serializer::V2).then(|| "3".to_owned());
        let reply =
            Outgoing::Reply { join_ref: Some("3"), msg_ref: Some("4"), topic: "c:1", status: "ok", response: payload };
        let expected = ServerReply {
            join_ref: jr.clone(),
            msg_ref: Some("4".into()),
            topic: "c:1".into(),
            status: "ok".into(),
            response: payload.clone(),
        };
        assert_eq!(decode(serializer, &reply), ServerMessage::Reply(expected));
        let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "n", payload, position: None };
        let expected = Message { join_ref: jr.clone(), ..msg(None, None, "c:1", "n", payload.clone()) };
        assert_eq!(decode(serializer, &push), ServerMessage::Event(expected));
        let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload, position: None };
        assert_eq!(decode(serializer, &bc), ServerMessage::Event(msg(None, None, "c:1", "new", payload.clone())));
    }
    let empty = Payload::empty();
    let err = Outgoing::Control { join_ref: Some("3"), topic: "c:1", event: PHX_ERROR, payload: &empty };
    assert_eq!(decode(Serializer::V2, &err), ServerMessage::Event(msg(Some("3"), Some("3"), "c:1", PHX_ERROR, empty)));
}

#[test]
fn malformed_server_frames_are_errors() {
    for bad in [
        &[][..],
        &[3, 0, 0],
        &[0, 1, 0],
        &[0, 5, 0, 0, b'a'],
        &[1, 0, 0, 0],
        &[1, 0, 0, 9, 0, b't'],
        &[2, 1],
        &[2, 0, 1, 0xff],
    ] {
        assert!(Serializer::V2.decode_server_binary(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Serializer::V1.decode_server_binary(&[2, 0, 0]), Err(DecodeError::BinaryNotSupported));
    for bad in [
        &br#"[null,"1","t","phx_reply",{}]"#[..],
        br#"[null,"1","t","phx_reply",{"status":1,"response":{}}]"#,
        br#"[null,"1","t","phx_reply",[]]"#,
    ] {
        assert!(Serializer::V2.decode_server_text(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    let empty_refs = Serializer::V2.decode_server_binary(&[0, 0, 1, 1, b't', b'e', 9]).unwrap();
    assert_eq!(empty_refs, ServerMessage::Event(msg(None, None, "t", "e", Payload::Binary(Bytes::from_static(&[9])))));
}

#[test]
fn structs_come_from_objects_only() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct NewComment {
        content: String,
    }
    let err = p(json!(["hello"])).decode::<NewComment>().unwrap_err();
    assert_eq!(err.message(), "invalid type: sequence, expected a JSON object");
    assert_eq!(p(json!({"content": "hi"})).decode::<NewComment>().unwrap().content, "hi");
    // sequences are still fine where a sequence is wanted
    assert_eq!(p(json!([1, 2])).decode::<Vec<u8>>().unwrap(), [1, 2]);
    assert_eq!(p(json!([1, "a"])).decode::<(u8, String)>().unwrap(), (1, "a".to_owned()));
}

#[test]
fn payload_errors_name_the_field() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }
    let err = p(json!({"inner": {"count": "many"}})).decode::<Outer>().unwrap_err();
    assert_eq!(err.path(), "inner.count");
    assert!(err.message().starts_with("invalid type: string \"many\""), "{}", err.message());
    let err = p(json!({})).decode::<Outer>().unwrap_err();
    assert_eq!(err.message(), "missing field `inner`");
    let bytes: Vec<u8> = Payload::Binary(Bytes::from_static(b"ab")).decode::<serde_bytes_like::Buf>().unwrap().0;
    assert_eq!(bytes, b"ab");
}

/// A minimal bytes-accepting type, so the test needs no extra crate.
mod serde_bytes_like {
    pub struct Buf(pub Vec<u8>);
    impl<'de> serde::Deserialize<'de> for Buf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

/// On a topic with history, a client that asked for positions gets them in
/// the `ref` field of broadcasts and of pushes made from intercepted
/// broadcasts; binary kinds have no `ref` and are written as before. With
/// no position every frame is byte for byte what it was.
#[test]
fn positions_ride_in_the_ref_field() {
    let resp = p(json!({"c": 1}));
    let at = Some("k3Xb9q:42");
    let bc = Outgoing::Broadcast { topic: "c:1", event: "new", payload: &resp, position: at };
    assert_eq!(text(&Serializer::V2.encode(&bc).unwrap()), r#"[null,"k3Xb9q:42","c:1","new",{"c":1}]"#);
    assert_eq!(
        text(&Serializer::V1.encode(&bc).unwrap()),
        r#"{"topic":"c:1","event":"new","payload":{"c":1},"ref":"k3Xb9q:42"}"#
    );
    let push = Outgoing::Push { join_ref: Some("3"), topic: "c:1", event: "new", payload: &resp, position: at };
    assert_eq!(text(&Serializer::V2.encode(&push).unwrap()), r#"["3","k3Xb9q:42","c:1","new",{"c":1}]"#);
    let data = Payload::from(vec![1u8, 2]);
    for (with, without) in [
        (
            Outgoing::Broadcast { topic: "t", event: "e", payload: &data, position: at },
            Outgoing::Broadcast { topic: "t", event: "e", payload: &data, position: None },
        ),
        (
            Outgoing::Push { join_ref: Some("3"), topic: "t", event: "e", payload: &data, position: at },
            Outgoing::Push { join_ref: Some("3"), topic: "t", event: "e", payload: &data, position: None },
        ),
    ] {
        assert_eq!(Serializer::V2.encode(&with).unwrap(), Serializer::V2.encode(&without).unwrap());
    }
    // the client reads the position back from the ref
    let ServerMessage::Event(m) =
        Serializer::V2.decode_server_text(br#"[null,"k3Xb9q:42","c:1","new",{"c":1}]"#).unwrap()
    else {
        panic!("an event")
    };
    assert_eq!(m.msg_ref.as_deref().map(str::parse::<Position>), Some(Ok(Position::new("k3Xb9q", 42).unwrap())));
}
