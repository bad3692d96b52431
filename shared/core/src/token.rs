//! Client tokens: Image Builder's idempotency keys, derived from content so that retries and
//! concurrent writers of the same content converge on one resource.

/// Image Builder's longest client token (`clientToken`: 1 to 36 characters).
pub const TOKEN_LIMIT: usize = 36;

/// A client token from a prefix, a version and a content hash, cut to [`TOKEN_LIMIT`].
pub fn client_token(prefix: &str, version: &str, content_hash: &str) -> String {
    format!("{prefix}{version}-{content_hash}")
        .chars()
        .take(TOKEN_LIMIT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cut_to_image_builders_limit() {
        let cases = [
            ("c", "1.0.4", "abc", "c1.0.4-abc"),
            (
                "r",
                "1.0.1",
                &"f".repeat(64),
                "r1.0.1-fffffffffffffffffffffffffffff",
            ),
        ];
        for (prefix, version, hash, expected) in cases {
            let token = client_token(prefix, version, hash);
            assert_eq!(token, expected);
            assert!(token.len() <= TOKEN_LIMIT);
        }
    }
}
