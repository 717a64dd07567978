//! HMAC-SHA256 frame signing (`--secret`), byte-compatible with the reference:
//! `sig = hex(HMAC-SHA256(secret, "<message_id>:<ts>"))`, plus the replay window on `ts`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::node::ids::{now_unix, parse_iso};

type HmacSha256 = Hmac<Sha256>;

/// What checking an inbound frame's signature concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signature present and valid, within the window.
    Valid,
    /// Not checked (no signature, lenient mode).
    Unchecked,
    /// Wrong signature accepted in lenient mode; the frame is marked `_sig_invalid` as the
    /// reference does.
    Flagged,
    /// The frame should be refused, with the reason.
    Rejected(String),
}

/// The shared secret and the rules for inbound frames.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
    window_secs: u64,
    lenient: bool,
}

impl Signer {
    /// A signer for `secret`; `lenient` keeps the reference's warn-only mode for bad sigs.
    pub fn new(secret: &str, window_secs: u64, lenient: bool) -> Signer {
        Signer {
            secret: secret.as_bytes().to_vec(),
            window_secs,
            lenient,
        }
    }

    /// The hex signature of one frame.
    pub fn sign(&self, message_id: &str, ts: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message_id.as_bytes());
        mac.update(b":");
        mac.update(ts.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The hex HMAC-SHA256 of a whole body: a webhook delivery's `X-ACP-Signature`, which
    /// lets the receiver check that the node holding the secret sent exactly these bytes.
    pub fn sign_body(&self, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks an inbound frame's `sig` and `ts`.
    pub fn verify(&self, message_id: &str, ts: Option<&str>, sig: Option<&str>) -> Verdict {
        let Some(ts) = ts else {
            return Verdict::Rejected("missing ts field".into());
        };
        let Some(sent) = parse_iso(ts) else {
            return Verdict::Rejected(format!("unparseable ts {ts:?}"));
        };
        let skew = (now_unix() - sent).abs();
        if skew > self.window_secs as f64 {
            return Verdict::Rejected(format!(
                "ts outside replay window ({skew:.0}s > {}s)",
                self.window_secs
            ));
        }
        let Some(sig) = sig else {
            return if self.lenient {
                Verdict::Unchecked
            } else {
                Verdict::Rejected("missing sig while a secret is configured".into())
            };
        };
        let Ok(sig_bytes) = hex::decode(sig) else {
            return self.mismatch();
        };
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message_id.as_bytes());
        mac.update(b":");
        mac.update(ts.as_bytes());
        if mac.verify_slice(&sig_bytes).is_ok() {
            Verdict::Valid
        } else {
            self.mismatch()
        }
    }

    fn mismatch(&self) -> Verdict {
        if self.lenient {
            tracing::warn!("HMAC signature mismatch accepted (lenient mode)");
            Verdict::Flagged
        } else {
            Verdict::Rejected("HMAC signature mismatch".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ids::now_iso;
    use crate::test_support::config;
    use proptest::prelude::*;

    #[test]
    fn matches_reference_vector() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b's3cret',b'msg_1:2026-01-01T00:00:00Z',hashlib.sha256).hexdigest())"
        let s = Signer::new("s3cret", 300, false);
        assert_eq!(
            s.sign("msg_1", "2026-01-01T00:00:00Z"),
            "1a111ca7b52105e6ebdbe21d48e94c1d7eeeb6a916174c2053ab228be15a36b0"
        );
    }

    #[test]
    fn a_body_signature_is_the_plain_hmac_of_the_bytes() {
        // RFC 4231-style check: python3 -c "import hmac,hashlib;print(hmac.new(b'key',
        // b'The quick brown fox jumps over the lazy dog',hashlib.sha256).hexdigest())"
        let s = Signer::new("key", 300, false);
        assert_eq!(
            s.sign_body(b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn verifies_and_rejects() {
        let s = Signer::new("s3cret", 300, false);
        let ts = now_iso();
        let sig = s.sign("msg_1", &ts);
        assert_eq!(s.verify("msg_1", Some(&ts), Some(&sig)), Verdict::Valid);
        assert!(matches!(
            s.verify("msg_2", Some(&ts), Some(&sig)),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            s.verify("msg_1", Some("2001-01-01T00:00:00Z"), Some(&sig)),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            s.verify("msg_1", Some(&ts), None),
            Verdict::Rejected(_)
        ));
        let lenient = Signer::new("s3cret", 300, true);
        assert_eq!(
            lenient.verify("msg_2", Some(&ts), Some(&sig)),
            Verdict::Flagged
        );
        assert_eq!(lenient.verify("msg_1", Some(&ts), None), Verdict::Unchecked);
    }

    /// A timestamp as a peer might send it: current, far off, malformed, or arbitrary text.
    fn arb_ts() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(now_iso()),
            Just(now_iso().trim_end_matches('Z').to_owned()),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary ids, timestamps and signatures never panic, and only the real signature
        /// of `message_id:ts` is ever `Valid`.
        #[test]
        fn prop_sign_verify_arbitrary_input_never_panics(
            secret in any::<String>(),
            message_id in any::<String>(),
            ts in proptest::option::of(arb_ts()),
            sig in proptest::option::of(prop_oneof!["[0-9a-fA-F]{0,70}", any::<String>()]),
            lenient in any::<bool>(),
        ) {
            let signer = Signer::new(&secret, 300, lenient);
            let verdict = signer.verify(&message_id, ts.as_deref(), sig.as_deref());
            if verdict == Verdict::Valid {
                let real = signer.sign(&message_id, ts.as_deref().unwrap_or_default());
                prop_assert_eq!(sig.map(|s| s.to_lowercase()), Some(real));
            }
            if !lenient {
                prop_assert!(!matches!(verdict, Verdict::Unchecked | Verdict::Flagged));
            }
        }

        /// sign → verify is `Valid` (hex in either case); another id, another secret or one
        /// changed hex digit is not.
        #[test]
        fn prop_sign_then_verify_round_trips(
            secret in any::<String>(),
            message_id in any::<String>(),
            other in any::<String>(),
            flip in 0usize..64,
        ) {
            let signer = Signer::new(&secret, 300, false);
            let ts = now_iso();
            let sig = signer.sign(&message_id, &ts);
            prop_assert_eq!(sig.len(), 64);
            prop_assert_eq!(signer.verify(&message_id, Some(&ts), Some(&sig)), Verdict::Valid);
            prop_assert_eq!(
                signer.verify(&message_id, Some(&ts), Some(&sig.to_uppercase())),
                Verdict::Valid
            );
            if other != message_id {
                prop_assert_ne!(signer.verify(&other, Some(&ts), Some(&sig)), Verdict::Valid);
            }
            let stranger = Signer::new(&format!("{secret}x"), 300, false);
            prop_assert_ne!(stranger.verify(&message_id, Some(&ts), Some(&sig)), Verdict::Valid);
            let mut bytes = sig.into_bytes();
            bytes[flip] = if bytes[flip] == b'0' { b'1' } else { b'0' };
            let flipped = String::from_utf8(bytes).expect("hex is ASCII");
            prop_assert_ne!(signer.verify(&message_id, Some(&ts), Some(&flipped)), Verdict::Valid);
        }
    }
}
