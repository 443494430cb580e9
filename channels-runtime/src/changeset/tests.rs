// The payload types exist to be decoded and validated; most fields are never read.
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::json;
use validator::Validate;

use super::*;

fn payload(value: Value) -> Payload {
    Payload::from(value)
}

/// The JSON text `cast::<T, M>` answers for `value`, or `"ok"`.
fn answer<T: DeserializeOwned + Validate, M: Messages>(value: Value) -> String {
    match cast::<T, M>(&payload(value)) {
        Ok(_) => "ok".to_owned(),
        Err(errors) => serde_json::to_string(&errors).unwrap(),
    }
}

// --- The discuss example's contract ---------------------------------------

/// discuss's `comment:add` payload: content, not blank after trimming.
#[derive(Debug, Deserialize, Validate)]
struct NewComment {
    #[validate(custom(function = "crate::changeset::not_blank"))]
    content: String,
}

/// discuss answers a wrong type as blank too.
struct BlankOnly;

impl Messages for BlankOnly {
    fn invalid(field: &str) -> String {
        Self::blank(field)
    }
}

#[test]
fn discuss_contract_every_bad_content_is_cant_be_blank() {
    let cases = [
        json!({}),
        json!({"content": ""}),
        json!({"content": "   "}),
        json!({"content": 42}),
        json!({"content": null}),
    ];
    for case in cases {
        assert_eq!(
            answer::<NewComment, BlankOnly>(case.clone()),
            r#"{"errors":{"content":["can't be blank"]}}"#,
            "{case}"
        );
    }
    let ok = cast::<NewComment, BlankOnly>(&payload(json!({"content": "valid one"}))).unwrap();
    assert_eq!(ok.content, "valid one");
}

#[test]
fn ecto_messages_tell_wrong_type_from_blank() {
    assert_eq!(answer::<NewComment, Ecto>(json!({"content": 42})), r#"{"errors":{"content":["is invalid"]}}"#);
    assert_eq!(answer::<NewComment, Ecto>(json!({"content": null})), r#"{"errors":{"content":["can't be blank"]}}"#);
    assert_eq!(answer::<NewComment, Ecto>(json!({})), r#"{"errors":{"content":["can't be blank"]}}"#);
    assert_eq!(answer::<NewComment, Ecto>(json!({"content": " "})), r#"{"errors":{"content":["can't be blank"]}}"#);
}

// --- not_blank: Ecto's validate_required for text --------------------------

#[derive(Debug, Deserialize, Validate)]
struct Blanks {
    #[validate(custom(function = "not_blank"))]
    owned: String,
    #[validate(custom(function = "not_blank"))]
    borrowed: std::borrow::Cow<'static, str>,
    #[validate(custom(function = "not_blank"))]
    optional: Option<String>,
    #[validate(custom(function = "not_blank", message = "say something, %{value}?"))]
    worded: String,
}

#[test]
fn not_blank_refuses_empty_and_whitespace_only_text_as_ecto_trims() {
    for blank in ["", " ", "\t\n\r ", "\u{a0}", "\u{3000}\u{2003}"] {
        assert_eq!(not_blank(blank), Err(ValidationError::new("blank")), "{blank:?}");
        assert_eq!(not_blank(&blank.to_owned()), Err(ValidationError::new("blank")), "{blank:?}");
    }
    for text in ["x", " x ", "\u{200b}", "0"] {
        assert_eq!(not_blank(text), Ok(()), "{text:?}");
    }
}

#[test]
fn not_blank_as_a_rule_answers_cant_be_blank_or_the_rules_message() {
    let good = || json!({"owned": "a", "borrowed": "b", "optional": "c", "worded": "d"});
    assert_eq!(answer::<Blanks, Ecto>(good()), "ok");
    let mut all_blank = good();
    for field in ["owned", "borrowed", "optional", "worded"] {
        all_blank[field] = json!("  ");
    }
    assert_eq!(
        answer::<Blanks, Ecto>(all_blank),
        r#"{"errors":{"borrowed":["can't be blank"],"optional":["can't be blank"],"owned":["can't be blank"],"worded":["say something,   ?"]}}"#
    );
    // A missing optional field is not checked (`required` is for that).
    let mut absent = good();
    absent["optional"] = Value::Null;
    assert_eq!(answer::<Blanks, Ecto>(absent), "ok");
    // The message of a blank is the payload's `Messages::blank`.
    struct Empty;
    impl Messages for Empty {
        fn blank(_field: &str) -> String {
            "is empty".to_owned()
        }
    }
    let mut one = good();
    one["owned"] = json!("");
    assert_eq!(answer::<Blanks, Empty>(one), r#"{"errors":{"owned":["is empty"]}}"#);
}

// --- Every message kind ---------------------------------------------------

#[derive(Debug, Deserialize, Validate)]
struct Signup {
    #[validate(length(min = 3, max = 8))]
    name: String,
    #[validate(length(equal = 4))]
    pin: String,
    #[validate(length(min = 1, max = 2))]
    tags: Vec<String>,
    #[validate(range(min = 18, max = 130))]
    age: u32,
    #[validate(range(exclusive_min = 0.0, exclusive_max = 1.0))]
    ratio: f64,
    #[validate(email)]
    email: String,
    #[validate(url)]
    homepage: String,
    #[validate(must_match(other = "password"))]
    confirmation: String,
    password: String,
    #[validate(required)]
    referrer: Option<String>,
    #[validate(length(min = 2, message = "needs %{min} or more, got \"%{value}\" (%{nope})"))]
    nickname: String,
}

fn good_signup() -> Value {
    json!({
        "name": "ada", "pin": "1234", "tags": ["x"], "age": 36, "ratio": 0.5,
        "email": "ada@example.com", "homepage": "https://example.com", "confirmation": "s3cret",
        "password": "s3cret", "referrer": "bob", "nickname": "al",
    })
}

fn signup_errors(changes: Value) -> Errors {
    let mut value = good_signup();
    for (k, v) in changes.as_object().unwrap() {
        value[k] = v.clone();
    }
    cast::<Signup, Ecto>(&payload(value)).unwrap_err()
}

#[test]
fn a_good_signup_passes() {
    assert!(cast::<Signup, Ecto>(&payload(good_signup())).is_ok());
}

#[test]
fn every_rule_has_an_ecto_default_message() {
    let cases: &[(Value, &str, &str)] = &[
        (json!({"name": "al"}), "name", "should be at least 3 character(s)"),
        (json!({"name": "ninechars"}), "name", "should be at most 8 character(s)"),
        (json!({"name": "ééé"}), "name", ""),
        (json!({"pin": "12"}), "pin", "should be 4 character(s)"),
        (json!({"tags": []}), "tags", "should have at least 1 item(s)"),
        (json!({"tags": ["a", "b", "c"]}), "tags", "should have at most 2 item(s)"),
        (json!({"age": 17}), "age", "must be greater than or equal to 18"),
        (json!({"age": 131}), "age", "must be less than or equal to 130"),
        (json!({"ratio": 0.0}), "ratio", "must be greater than 0.0"),
        (json!({"ratio": 1.0}), "ratio", "must be less than 1.0"),
        (json!({"email": "nope"}), "email", "has invalid format"),
        (json!({"homepage": "not a url"}), "homepage", "has invalid format"),
        (json!({"confirmation": "other"}), "confirmation", "does not match confirmation"),
        (json!({"referrer": null}), "referrer", "can't be blank"),
        (json!({"nickname": "x"}), "nickname", "needs 2 or more, got \"x\" (%{nope})"),
    ];
    for (change, field, message) in cases {
        if message.is_empty() {
            // Three characters of two bytes each: length counts characters.
            assert!(cast::<Signup, Ecto>(&payload({
                let mut v = good_signup();
                v[field] = change[field].clone();
                v
            }))
            .is_ok());
            continue;
        }
        let errors = signup_errors(change.clone());
        assert_eq!(errors.flatten(), vec![(field.to_string(), *message)], "{change}");
    }
}

#[test]
fn messages_for_unreadable_fields_come_from_m() {
    struct Custom;
    impl Messages for Custom {
        fn blank(field: &str) -> String {
            format!("{field} is required")
        }
        fn invalid(field: &str) -> String {
            format!("{field} has the wrong type")
        }
    }
    let mut value = good_signup();
    value.as_object_mut().unwrap().remove("name");
    value["age"] = json!("old");
    value["referrer"] = json!(null);
    let errors = cast::<Signup, Custom>(&payload(value)).unwrap_err();
    assert_eq!(
        errors.flatten(),
        vec![
            ("age".to_owned(), "age has the wrong type"),
            ("name".to_owned(), "name is required"),
            // The `required` rule is a blank field too.
            ("referrer".to_owned(), "referrer is required"),
        ]
    );
}

// --- Every field in one answer --------------------------------------------

#[test]
fn every_failing_field_is_in_one_answer_and_cast_errors_hide_rule_errors() {
    let value = json!({
        // missing: name; null: pin; wrong types: tags (an item), age, ratio.
        "pin": null, "tags": ["ok", 5], "age": "36", "ratio": true,
        // rule failures
        "email": "nope", "homepage": "https://example.com", "confirmation": "a", "password": "b",
        "referrer": "bob", "nickname": "x",
        // ignored
        "unknown": {"deep": [1, 2, 3]},
    });
    let errors = cast::<Signup, Ecto>(&payload(value)).unwrap_err();
    assert_eq!(
        serde_json::to_value(&errors).unwrap(),
        json!({"errors": {
            "age": ["is invalid"],
            "confirmation": ["does not match confirmation"],
            "email": ["has invalid format"],
            "name": ["can't be blank"],
            "nickname": ["needs 2 or more, got \"x\" (%{nope})"],
            "pin": ["can't be blank"],
            "ratio": ["is invalid"],
            "tags": ["is invalid"],
        }})
    );
}

#[test]
fn a_rule_message_is_dropped_for_a_field_that_failed_to_decode() {
    // `""` (the placeholder for a missing name) breaks `length(min = 3)`,
    // and `[]` (for bad tags) breaks `length(min = 1)`: neither may show.
    let errors = signup_errors(json!({"tags": 7}));
    assert_eq!(errors.flatten(), vec![("tags".to_owned(), "is invalid")]);
    let mut value = good_signup();
    value.as_object_mut().unwrap().remove("name");
    let errors = cast::<Signup, Ecto>(&payload(value)).unwrap_err();
    assert_eq!(errors.flatten(), vec![("name".to_owned(), "can't be blank")]);
}

#[test]
fn optional_and_defaulted_fields_may_be_absent_or_null() {
    #[derive(Debug, Deserialize, Validate)]
    struct Search {
        #[validate(length(min = 2))]
        query: Option<String>,
        #[serde(default)]
        page: u32,
    }
    assert!(cast::<Search, Ecto>(&payload(json!({}))).is_ok());
    assert!(cast::<Search, Ecto>(&payload(json!({"query": null}))).is_ok());
    assert_eq!(
        answer::<Search, Ecto>(json!({"query": "a", "page": -1})),
        r#"{"errors":{"page":["is invalid"],"query":["should be at least 2 character(s)"]}}"#
    );
}

#[test]
fn enums_and_refused_values_are_invalid() {
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Color {
        Red,
        Green,
    }
    #[derive(Debug, Deserialize, Validate)]
    struct Paint {
        color: Color,
        level: u8,
        #[serde(default)]
        shade: Option<Color>,
    }
    assert!(cast::<Paint, Ecto>(&payload(json!({"color": "red", "level": 3, "shade": "green"}))).is_ok());
    assert_eq!(
        answer::<Paint, Ecto>(json!({"color": "blue", "level": 300, "shade": 1})),
        r#"{"errors":{"color":["is invalid"],"level":["is invalid"],"shade":["is invalid"]}}"#
    );
}

#[test]
fn unknown_fields_are_ignored_unless_the_type_denies_them() {
    #[derive(Debug, Deserialize, Validate)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[validate(length(min = 1))]
        name: String,
    }
    assert_eq!(
        answer::<Strict, Ecto>(json!({"name": "", "admin": true, "zzz": 1})),
        r#"{"errors":{"admin":["is invalid"],"name":["should be at least 1 character(s)"],"zzz":["is invalid"]}}"#
    );
    assert_eq!(answer::<NewComment, Ecto>(json!({"content": "hi", "admin": true})), "ok");
}

// --- Field names as they travel ---------------------------------------------

#[test]
fn rename_all_conventions_name_rule_and_cast_errors_alike() {
    #[derive(Debug, Deserialize, Validate)]
    #[serde(rename_all = "camelCase")]
    struct Camel {
        #[validate(length(min = 2))]
        display_name: String,
        #[validate(range(max = 10))]
        max_guests: u8,
        birth_year: u16,
    }
    assert_eq!(
        answer::<Camel, Ecto>(json!({"displayName": "a", "maxGuests": 11, "birthYear": "x"})),
        r#"{"errors":{"birthYear":["is invalid"],"displayName":["should be at least 2 character(s)"],"maxGuests":["must be less than or equal to 10"]}}"#
    );

    #[derive(Debug, Deserialize, Validate)]
    #[serde(rename_all = "SCREAMING-KEBAB-CASE")]
    struct Kebab {
        #[validate(length(min = 2))]
        display_name: String,
    }
    assert_eq!(
        answer::<Kebab, Ecto>(json!({"DISPLAY-NAME": "a"})),
        r#"{"errors":{"DISPLAY-NAME":["should be at least 2 character(s)"]}}"#
    );

    #[derive(Debug, Deserialize, Validate)]
    struct Raw {
        #[validate(length(min = 2))]
        r#type: String,
        #[serde(rename = "Title")]
        #[validate(length(min = 2))]
        title: String,
    }
    assert_eq!(
        answer::<Raw, Ecto>(json!({"type": "a", "Title": "b"})),
        r#"{"errors":{"Title":["should be at least 2 character(s)"],"type":["should be at least 2 character(s)"]}}"#
    );
}

#[test]
fn a_rename_no_convention_explains_reports_rules_under_the_rust_name() {
    // The documented limitation: validator knows `content`, serde `body`.
    #[derive(Debug, Deserialize, Validate)]
    struct Renamed {
        #[serde(rename = "body")]
        #[validate(length(min = 2))]
        content: String,
    }
    assert_eq!(
        answer::<Renamed, Ecto>(json!({"body": "a"})),
        r#"{"errors":{"content":["should be at least 2 character(s)"]}}"#
    );
    // Decoding errors use the wire name: serde names them. The rule error
    // of the placeholder put in `body`'s place cannot be told from a real
    // one of `content`, so it is left out.
    assert_eq!(answer::<Renamed, Ecto>(json!({})), r#"{"errors":{"body":["can't be blank"]}}"#);
}

// --- Nested structs ---------------------------------------------------------

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct Address {
    #[validate(length(min = 2))]
    city: String,
    #[validate(length(equal = 5))]
    zip_code: String,
}

// `Serialize` because validator puts a failing list itself in the error.
#[derive(Debug, Deserialize, serde::Serialize, Validate)]
struct Line {
    #[validate(length(min = 1))]
    sku: String,
    #[validate(range(min = 1))]
    qty: u32,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct Order {
    #[validate(nested)]
    ship_to: Address,
    #[validate(nested)]
    bill_to: Option<Address>,
    #[validate(nested, length(min = 1))]
    lines: Vec<Line>,
}

#[test]
fn nested_struct_errors_nest_under_wire_names() {
    let value = json!({
        "shipTo": {"city": "X", "zipCode": 123},
        "billTo": {"zipCode": "1234"},
        "lines": [{"sku": "a", "qty": 1}, {"sku": "", "qty": 0}, {"sku": "c", "qty": 2}],
    });
    let errors = cast::<Order, Ecto>(&payload(value)).unwrap_err();
    assert_eq!(
        serde_json::to_value(&errors).unwrap(),
        json!({"errors": {
            "billTo": {"city": ["can't be blank"], "zipCode": ["should be 5 character(s)"]},
            "lines": [{}, {"qty": ["must be greater than or equal to 1"], "sku": ["should be at least 1 character(s)"]}, {}],
            "shipTo": {"city": ["should be at least 2 character(s)"], "zipCode": ["is invalid"]},
        }})
    );
    assert_eq!(
        errors.to_string(),
        "billTo.city: can't be blank; billTo.zipCode: should be 5 character(s); \
         lines.1.qty: must be greater than or equal to 1; lines.1.sku: should be at least 1 character(s); \
         shipTo.city: should be at least 2 character(s); shipTo.zipCode: is invalid"
    );
}

#[test]
fn a_missing_or_wrong_nested_struct_is_the_fields_own_error() {
    let errors = cast::<Order, Ecto>(&payload(json!({"lines": [{"sku": "a"}, 5], "billTo": "x"}))).unwrap_err();
    assert_eq!(
        serde_json::to_value(&errors).unwrap(),
        json!({"errors": {
            "billTo": ["is invalid"],
            // An item that is not a struct is the list's error, as for scalars.
            "lines": ["is invalid"],
            "shipTo": ["can't be blank"],
        }})
    );
    let errors = cast::<Order, Ecto>(&payload(
        json!({"shipTo": {"city": "Paris", "zipCode": "75001"}, "lines": [{"sku": "a"}]}),
    ))
    .unwrap_err();
    assert_eq!(serde_json::to_value(&errors).unwrap(), json!({"errors": {"lines": [{"qty": ["can't be blank"]}]}}));
}

// --- Payloads that are not objects ---------------------------------------

#[test]
fn a_payload_that_is_not_an_object_is_invalid_under_payload() {
    // `["hi"]` would pass for `{"content": "hi"}` with serde alone.
    for value in [json!(["hi"]), json!([{"content": "hi"}]), json!("hi"), json!(1), json!(null), json!(true)] {
        assert_eq!(answer::<NewComment, Ecto>(value.clone()), r#"{"errors":{"payload":["is invalid"]}}"#, "{value}");
    }
    let binary = Payload::Binary(bytes::Bytes::from_static(b"\x00\x01"));
    assert_eq!(
        serde_json::to_string(&cast::<NewComment, Ecto>(&binary).unwrap_err()).unwrap(),
        r#"{"errors":{"payload":["is invalid"]}}"#
    );
    assert_eq!(
        serde_json::to_string(&cast::<NewComment, BlankOnly>(&binary).unwrap_err()).unwrap(),
        r#"{"errors":{"payload":["can't be blank"]}}"#
    );
}

// --- Hostile payloads stay bounded ---------------------------------------

#[test]
fn deep_nesting_is_refused_by_the_parser_not_walked() {
    let deep = format!("{{\"content\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let raw = serde_json::value::RawValue::from_string(deep).unwrap();
    let (result, passes) = cast_counted::<NewComment, Ecto>(&Payload::Json(raw));
    assert_eq!(serde_json::to_string(&result.unwrap_err()).unwrap(), r#"{"errors":{"payload":["is invalid"]}}"#);
    assert_eq!(passes, 0);
}

#[test]
fn a_huge_bad_list_costs_a_few_passes() {
    #[derive(Debug, Deserialize, Validate)]
    struct Tagged {
        tags: Vec<String>,
    }
    let tags: Vec<u32> = (0..100_000).collect();
    let (result, passes) = cast_counted::<Tagged, Ecto>(&payload(json!({"tags": tags})));
    assert_eq!(serde_json::to_string(&result.unwrap_err()).unwrap(), r#"{"errors":{"tags":["is invalid"]}}"#);
    assert_eq!(passes, 2, "one pass to find it, one with `[]` in its place");
}

#[test]
fn many_broken_items_stop_at_the_bounds_with_the_errors_found() {
    let lines: Vec<Value> = (0..10_000).map(|_| json!({"sku": "a"})).collect();
    let value = json!({"shipTo": {"city": "Paris", "zipCode": "75001"}, "lines": lines});
    let (result, passes) = cast_counted::<Order, Ecto>(&payload(value));
    assert!(passes <= MAX_PASSES, "{passes}");
    let errors = result.unwrap_err();
    let found = errors.flatten();
    assert!(!found.is_empty() && found.len() < MAX_PASSES, "{}", found.len());
    assert!(found.iter().all(|(path, message)| path.ends_with(".qty") && *message == "can't be blank"));
}

#[test]
fn the_work_budget_caps_passes_over_a_large_payload() {
    #[derive(Debug, Deserialize, Validate)]
    struct Wide {
        big: Vec<String>,
        m: u8,
        n: u8,
        o: u8,
        p: u8,
        q: u8,
        r: u8,
        s: u8,
        t: u8,
        u: u8,
        v: u8,
    }
    // `big` is read in full on every pass; ten bad fields after it would
    // take ~20 passes, but the budget (8 × the payload's nodes) stops it.
    let big: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
    let value = json!({"big": big, "m": "x", "n": "x", "o": "x", "p": "x", "q": "x", "r": "x", "s": "x", "t": "x", "u": "x", "v": "x"});
    let (result, passes) = cast_counted::<Wide, Ecto>(&payload(value));
    assert!(passes <= BUDGET_FACTOR + 1, "{passes}");
    assert!(!result.unwrap_err().is_empty());
}

#[test]
fn ignored_keys_count_against_the_budget() {
    #[derive(Debug, Deserialize, Validate)]
    struct Wide {
        za: u8,
        zb: u8,
        zc: u8,
        zd: u8,
        ze: u8,
        zf: u8,
        zg: u8,
        zh: u8,
        zi: u8,
        zj: u8,
        zk: u8,
        zl: u8,
        zm: u8,
        zn: u8,
        zo: u8,
        zp: u8,
        zq: u8,
        zr: u8,
        zs: u8,
        zt: u8,
        zu: u8,
        zv: u8,
        zw: u8,
        zx: u8,
        zy: u8,
        zz: u8,
    }
    // The ignored values are skipped, but every pass steps over each key
    // (all sort before the fields): 26 bad fields would take 27 passes of
    // 100 000 steps; the budget (8 × 2 steps per key) allows about 16.
    let mut value: Map<String, Value> = (0..100_000).map(|i| (format!("k{i}"), Value::Null)).collect();
    for c in 'a'..='z' {
        value.insert(format!("z{c}"), json!("x"));
    }
    let (result, passes) = cast_counted::<Wide, Ecto>(&payload(Value::Object(value)));
    assert!(passes <= 2 * BUDGET_FACTOR + 1, "{passes}");
    assert!(!result.unwrap_err().is_empty());
}

// --- Errors and Valid -----------------------------------------------------

#[test]
fn errors_api() {
    let mut errors = Errors::new();
    assert!(errors.is_empty());
    errors.add("title", "has already been taken").add("content", "can't be blank").add("content", "is too rude");
    errors.add("content", "can't be blank");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors.messages("content"), ["can't be blank", "is too rude"]);
    assert!(errors.messages("nope").is_empty());
    assert!(matches!(errors.get("title"), Some(FieldErrors::Messages(m)) if m.len() == 1));
    let fields: Vec<&str> = errors.iter().map(|(field, _)| field).collect();
    assert_eq!(fields, ["content", "title"]);
    assert_eq!((&errors).into_iter().count(), 2);
    assert_eq!(errors.to_string(), "content: can't be blank; content: is too rude; title: has already been taken");
    assert_eq!(
        errors.to_value(),
        json!({"errors": {"content": ["can't be blank", "is too rude"], "title": ["has already been taken"]}})
    );
    assert_eq!(
        Payload::from(errors).as_json(),
        Some(r#"{"errors":{"content":["can't be blank","is too rude"],"title":["has already been taken"]}}"#)
    );
}

#[test]
fn valid_hands_over_a_valid_value() {
    let mut new = Valid::<NewComment>::from_payload(&payload(json!({"content": "hi"}))).unwrap();
    assert_eq!(new.content, "hi");
    new.content.push('!');
    assert_eq!(format!("{new:?}"), r#"Valid(NewComment { content: "hi!" })"#);
    assert_eq!(new.into_inner().content, "hi!");
    let errors = Valid::<NewComment, BlankOnly>::from_payload(&payload(json!({"content": 1}))).unwrap_err();
    assert_eq!(errors.messages("content"), ["can't be blank"]);
}

#[test]
fn wire_names_follow_serde_conventions() {
    let fields: &[&str] = &["displayName", "id", "URL"];
    assert_eq!(wire_name("display_name", Some(fields)), "displayName");
    assert_eq!(wire_name("id", Some(fields)), "id");
    assert_eq!(wire_name("url", Some(fields)), "URL");
    assert_eq!(wire_name("r#type", None), "type");
    assert_eq!(wire_name("other", Some(fields)), "other");
}

#[test]
fn the_derive_can_use_the_reexported_validator() {
    // What an app without its own `validator` dependency writes, with
    // `phx_channels_runtime::changeset::validator` for the path.
    #[derive(Debug, Deserialize, Validate)]
    #[validate(crate = "crate::changeset::validator")]
    struct Note {
        #[validate(length(min = 2))]
        text: String,
    }
    assert_eq!(
        answer::<Note, Ecto>(json!({"text": "a"})),
        r#"{"errors":{"text":["should be at least 2 character(s)"]}}"#
    );
}
