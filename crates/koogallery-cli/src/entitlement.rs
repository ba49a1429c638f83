//! `koogallery entitlement verify`: checks a signed entitlement (standard input) against a JWK set
//! from a file or a URL, as the seller's software would, and prints its claims or why it is refused.

use std::io::Read as _;

use licensing_entitlement::{Jwks, verify};

/// Reads the JWK set from `source`: an `http://` or `https://` URL, else a file.
async fn jwks(source: &str) -> Result<Jwks, String> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("--jwks {source}: {e}"))?
            .get(source)
            .send()
            .await
            .map_err(|e| format!("--jwks {source}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("--jwks {source}: HTTP {}", response.status()));
        }
        response
            .text()
            .await
            .map_err(|e| format!("--jwks {source}: {e}"))?
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("--jwks {source}: {e}"))?
    };
    Jwks::from_json(&text).map_err(|e| format!("--jwks {source}: {e}"))
}

/// Verifies the token on standard input at `at` (seconds since the epoch, default now). `Ok(true)`
/// when valid (the claims printed as JSON), `Ok(false)` when refused (the reason printed),
/// `Err` for a usage problem.
pub(crate) async fn run(source: &str, at: Option<i64>) -> Result<bool, String> {
    let keys = jwks(source).await?;
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    let now = at.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    match verify(&token, &keys, now) {
        Ok(claims) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            Ok(true)
        }
        Err(refused) => {
            println!("refused: {refused}");
            Ok(false)
        }
    }
}
