//! Trusted networks and the balancing hash key.

use super::*;

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn is_trusted_matches_v4_networks() {
    let n = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
    assert!(is_trusted("10.200.3.4".parse().unwrap(), &n));
    assert!(is_trusted("192.168.1.1".parse().unwrap(), &n));
    assert!(!is_trusted("192.168.1.2".parse().unwrap(), &n));
    assert!(!is_trusted("11.0.0.1".parse().unwrap(), &n));
    assert!(!is_trusted("10.0.0.1".parse().unwrap(), &[]));
}

#[test]
fn is_trusted_matches_v6_networks() {
    let n = nets(&["2001:db8::/32", "::1/128"]);
    assert!(is_trusted("2001:db8:1::5".parse().unwrap(), &n));
    assert!(is_trusted("::1".parse().unwrap(), &n));
    assert!(!is_trusted("2001:db9::1".parse().unwrap(), &n));
    assert!(!is_trusted("10.0.0.1".parse().unwrap(), &n));
}

#[test]
fn is_trusted_treats_v4_mapped_as_v4() {
    let n = nets(&["10.0.0.0/8"]);
    assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &n));
    assert!(!is_trusted("::ffff:11.1.2.3".parse().unwrap(), &n));
    // A network written in mapped form still matches the mapped address.
    let mapped = nets(&["::ffff:10.0.0.0/104"]);
    assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &mapped));
}

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

#[test]
fn hash_key_from_header() {
    let h = hm(&[("x-user", "alice"), ("x-user", "bob"), ("x-empty", "")]);
    let u = uri("/");
    let k = |n: &str| hash_key_value(&HashKey::Header(n.into()), &h, &u);
    assert_eq!(k("x-user").as_deref(), Some("alice"));
    assert_eq!(k("X-User").as_deref(), Some("alice"));
    assert_eq!(k("x-missing"), None);
    assert_eq!(k("x-empty"), None);
    assert_eq!(k("bad name\n"), None);
}

#[test]
fn hash_key_from_cookie() {
    let h = hm(&[
        ("cookie", "a=1; sid=abc ;b=2"),
        ("cookie", "c=3; sid=later; q=\"quoted\"; e="),
    ]);
    let u = uri("/");
    let k = |n: &str| hash_key_value(&HashKey::Cookie(n.into()), &h, &u);
    assert_eq!(k("sid").as_deref(), Some("abc"));
    assert_eq!(k("b").as_deref(), Some("2"));
    assert_eq!(k("c").as_deref(), Some("3"));
    assert_eq!(k("q").as_deref(), Some("quoted"));
    assert_eq!(k("SID"), None);
    assert_eq!(k("e"), None);
    assert_eq!(k("missing"), None);
    assert_eq!(
        hash_key_value(&HashKey::Cookie("a".into()), &HeaderMap::new(), &u),
        None
    );
}

#[test]
fn hash_key_from_query() {
    let h = HeaderMap::new();
    let u = uri("/chat?room=7&flag&user=x&room=9&empty=");
    let k = |n: &str| hash_key_value(&HashKey::Query(n.into()), &h, &u);
    assert_eq!(k("room").as_deref(), Some("7"));
    assert_eq!(k("user").as_deref(), Some("x"));
    assert_eq!(k("flag"), None);
    assert_eq!(k("empty"), None);
    assert_eq!(k("missing"), None);
    let none = uri("/chat");
    assert_eq!(
        hash_key_value(&HashKey::Query("room".into()), &h, &none),
        None
    );
}

#[test]
fn hash_key_borrows_valid_utf8_and_decodes_the_rest() {
    let mut h = HeaderMap::new();
    h.insert("x-k", HeaderValue::from_bytes(b"v\xff").unwrap());
    h.insert("x-ok", HeaderValue::from_static("fine"));
    let u = uri("/");
    let bad = hash_key_value(&HashKey::Header("x-k".into()), &h, &u).unwrap();
    assert_eq!(bad, "v\u{fffd}");
    let ok = hash_key_value(&HashKey::Header("x-ok".into()), &h, &u).unwrap();
    assert!(matches!(ok, Cow::Borrowed("fine")));
}
