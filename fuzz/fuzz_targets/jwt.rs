//! Token handling: `Authority::verify` on arbitrary text never panics;
//! arbitrary claims JSON, correctly signed, never panics either; and a
//! token issued for arbitrary claims verifies back to the same grants
//! (the user id given as a number or as a decimal string with leading
//! zeros is the same user).
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use postmesh_gateway::auth::{AuthError, Authority, Claims};
use postmesh_schema::{Path, Pattern};
use serde_json::value::RawValue;

const SECRET: &str = "k";

fn authority() -> &'static Authority {
    static A: OnceLock<Authority> = OnceLock::new();
    A.get_or_init(|| Authority::new(Some(SECRET)))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims the fuzzer chooses, always valid in time so that verification
/// reaches the claims themselves.
#[derive(Debug, Arbitrary)]
struct Input {
    sub: Option<u64>,
    sub_as_number: bool,
    leading_zeros: u8,
    exp_ahead: u32,
    nbf_behind: Option<u16>,
    subs: Vec<String>,
    pubs: Vec<String>,
    /// Signed as the whole claims object, if it is JSON.
    raw_claims: String,
}

fn sign<T: serde::Serialize>(claims: &T) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("signing serializable claims")
}

fn round_trip(input: Input) {
    let a = authority();
    let now = now();
    // At least a minute ahead, beyond the 5 s leeway and the run time.
    let exp = now + 60 + u64::from(input.exp_ahead);
    let nbf = input.nbf_behind.map(|b| now.saturating_sub(u64::from(b)));
    let subs: Vec<String> = input.subs.into_iter().take(4).collect();
    let pubs: Vec<String> = input.pubs.into_iter().take(4).collect();
    let zeros = "0".repeat(usize::from(input.leading_zeros % 4));
    let claims = Claims {
        sub: input.sub.map(|n| format!("{zeros}{n}")),
        exp,
        nbf,
        subs: subs.clone(),
        pubs: pubs.clone(),
    };
    let token = a.issue(&claims).expect("issuing with a secret");
    let got = a.verify(&token);

    let bad_pattern = subs.iter().chain(&pubs).find(|p| Pattern::parse(p).is_err());
    let g = match (got, bad_pattern) {
        (Err(AuthError::Claim(_, _)), Some(_)) => return,
        (Ok(g), None) => g,
        (got, bad) => panic!("claims {claims:?} (bad pattern {bad:?}) verified as {got:?}"),
    };
    assert_eq!(g.user, input.sub, "{claims:?}");
    assert_eq!(g.exp, Some(exp));
    assert!(!g.all);
    assert!(!g.is_unauthenticated());
    for s in &subs {
        let p = Pattern::parse(s).expect("checked above");
        // Within the covers state limit, a granted pattern covers itself.
        if p.elements().count() <= 10 {
            assert!(g.can_read(&p), "{claims:?} cannot read its own {p:?}");
        }
    }
    for s in &pubs {
        if let Ok(path) = Path::parse(s) {
            assert!(g.can_publish(&path), "{claims:?} cannot publish to {path:?}");
        }
    }

    // The same claims with the user id as a JSON number.
    if let (Some(n), true) = (input.sub, input.sub_as_number) {
        let mut v = serde_json::to_value(&claims).expect("claims serialize");
        v["sub"] = serde_json::Value::from(n);
        let g2 = a.verify(&sign(&v)).expect("same claims, numeric sub");
        assert_eq!(g2, g);
    }

    // Arbitrary claims JSON, signed: any answer but a panic.
    if let Ok(raw) = RawValue::from_string(input.raw_claims) {
        let _ = a.verify(&sign(&raw));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 8192 {
        return;
    }
    // The bytes as a token: mostly refused before the signature matches.
    let _ = authority().verify(&String::from_utf8_lossy(data));
    // The same bytes as claims to issue.
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        round_trip(input);
    }
});
