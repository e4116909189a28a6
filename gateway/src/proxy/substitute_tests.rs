use super::*;

/// Resolves `key` (and `quote`, a value that needs escaping); refuses
/// every other name.
struct Keys;

impl Resolve for Keys {
    fn resolve(&mut self, name: &str) -> Result<&[u8], String> {
        match name {
            "key" => Ok(b"sk-123"),
            "quote" => Ok(b"a\"b\\c d/e+f&g\n\xc3\xa9"),
            _ => Err(format!("{name} is not here")),
        }
    }
}

/// `input` through a substituter cut into `pieces` (their lengths, the
/// last piece is the rest).
fn run(encoding: Encoding, input: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Refused> {
    let mut s = Substituter::new(encoding);
    let mut out = ZBuf::with_capacity(16);
    let mut from = 0;
    for &cut in cuts {
        let to = cut.clamp(from, input.len());
        s.feed(&input[from..to], &mut out, &mut Keys)?;
        from = to;
    }
    s.feed(&input[from..], &mut out, &mut Keys)?;
    s.finish(&mut out, &mut Keys)?;
    Ok(out.as_slice().to_vec())
}

/// The same answer whole, cut once at every position, cut twice at every
/// pair of positions, and one byte at a time.
fn check(encoding: Encoding, input: &str, want: Result<&str, &str>) {
    let input = input.as_bytes();
    let mut splits: Vec<Vec<usize>> = vec![vec![], (1..input.len()).collect()];
    for a in 0..=input.len() {
        splits.push(vec![a]);
        for b in a..=input.len() {
            splits.push(vec![a, b]);
        }
    }
    for cuts in splits {
        let got = run(encoding, input, &cuts);
        match want {
            Ok(w) => assert_eq!(
                got.as_deref().map(String::from_utf8_lossy),
                Ok(w.into()),
                "{encoding:?} {cuts:?}"
            ),
            Err(name) => assert_eq!(
                got.map_err(|r| r.name),
                Err(name.to_owned()),
                "{encoding:?} {cuts:?}"
            ),
        }
    }
}

#[test]
fn json_strings_get_the_value_escaped() {
    use Encoding::Json;
    check(Json, r#"{"t":"airlock:key"}"#, Ok(r#"{"t":"sk-123"}"#));
    check(
        Json,
        r#"{"t":"Bearer airlock:key!"}"#,
        Ok(r#"{"t":"Bearer sk-123!"}"#),
    );
    check(
        Json,
        r#"["airlock:quote"]"#,
        Ok(r#"["a\"b\\c d/e+f&g\u000Aé"]"#),
    );
    // However the agent's JSON library spelled it.
    check(Json, r#"{"t":"airlock\u003akey"}"#, Ok(r#"{"t":"sk-123"}"#));
    check(Json, r#"{"t":"\u0061irlock:key"}"#, Ok(r#"{"t":"sk-123"}"#));
    check(Json, r#"{"t":"airlock:\u006bey"}"#, Ok(r#"{"t":"sk-123"}"#));
    // A name ends at the first other character, escaped or not.
    check(Json, r#"["airlock:key\n"]"#, Ok(r#"["sk-123\n"]"#));
    check(Json, r#"["airlock:key\"x"]"#, Ok(r#"["sk-123\"x"]"#));
}

#[test]
fn json_outside_strings_and_non_placeholders_pass_as_they_are() {
    use Encoding::Json;
    for same in [
        r#"{"airlock":1,"a":"airlock","b":"airlock:","c":"airlock:-x"}"#,
        r#"{"x": airlock:key}"#,
        r#"["airlock:KEY","\u00e9airlock","aairlock\u0020"]"#,
        r#"["\uZZZZairlock:","\"]"#,
        "[\"airlock:key",
    ] {
        let want = if same.ends_with("key") {
            Ok("[\"sk-123")
        } else {
            Ok(same)
        };
        check(Json, same, want);
    }
    // A broken escape is no name character and ends nothing else: the
    // quote after a cut-short `\u` still ends the string.
    check(Json, r#"["\u00"]"#, Ok(r#"["\u00"]"#));
    check(
        Json,
        r#"["\u", airlock:other, "airlock:key"]"#,
        Ok(r#"["\u", airlock:other, "sk-123"]"#),
    );
}

#[test]
fn form_values_get_the_value_form_encoded() {
    use Encoding::Form;
    check(
        Form,
        "a=1&token=airlock:key&b=2",
        Ok("a=1&token=sk-123&b=2"),
    );
    check(Form, "token=airlock%3Akey", Ok("token=sk-123"));
    check(Form, "token=%61irlock%3akey", Ok("token=sk-123"));
    check(
        Form,
        "t=airlock:quote",
        Ok("t=a%22b%5Cc+d%2Fe%2Bf%26g%0A%C3%A9"),
    );
    check(Form, "t=airlock:key+x", Ok("t=sk-123+x"));
    check(Form, "t=%zzairlock%3", Ok("t=%zzairlock%3"));
    check(Form, "t=%%61irlock:key", Ok("t=%sk-123"));
    check(Form, "t=airlock+key", Ok("t=airlock+key"));
}

#[test]
fn text_is_substituted_as_it_is() {
    check(
        Encoding::Text,
        r#"{"op":"auth","key":"airlock:key"}"#,
        Ok(r#"{"op":"auth","key":"sk-123"}"#),
    );
    check(Encoding::Text, "airlock:key", Ok("sk-123"));
    check(
        Encoding::Text,
        "xairlock:key,airlock:key",
        Ok("xsk-123,sk-123"),
    );
}

#[test]
fn a_placeholder_that_may_not_resolve_stops_the_text() {
    check(Encoding::Json, r#"{"a":"airlock:other"}"#, Err("other"));
    check(Encoding::Form, "a=airlock%3Aother", Err("other"));
    check(Encoding::Text, "hi airlock:other", Err("other"));
    // The first one decides, even with a good one after it.
    check(Encoding::Text, "airlock:other airlock:key", Err("other"));
}

#[test]
fn names_are_cut_at_sixty_three_bytes_like_the_scanner() {
    let long = format!("\"airlock:{}\"", "k".repeat(70));
    let mut s = Substituter::new(Encoding::Json);
    let mut out = ZBuf::with_capacity(0);
    let err = s.feed(long.as_bytes(), &mut out, &mut Keys).unwrap_err();
    assert_eq!(err.name.len(), 63);
    let found = crate::proxy::placeholder::find_all(&long);
    assert_eq!(found[0].name, err.name);
}

#[test]
fn memory_stays_bounded_on_long_text() {
    // A long run that keeps almost-matching never holds more than one
    // placeholder's worth.
    let mut s = Substituter::new(Encoding::Json);
    let mut out = ZBuf::with_capacity(0);
    s.feed(b"[\"", &mut out, &mut Keys).unwrap();
    for _ in 0..10_000 {
        s.feed(br"\u0061irlock\u0020", &mut out, &mut Keys).unwrap();
        assert!(s.pending.len() < 430);
    }
    s.finish(&mut out, &mut Keys).unwrap();
}

#[test]
fn a_grown_buffer_keeps_what_was_written() {
    let mut b = ZBuf::with_capacity(1);
    for i in 0..100u8 {
        b.push(i);
    }
    b.extend(&[7; 300]);
    let bytes = b.into_bytes();
    assert_eq!(bytes.len(), 400);
    assert_eq!(bytes[99], 99);
}
