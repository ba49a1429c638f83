//! Signed entitlements end to end (D24): keys written by `openssl genpkey`, tokens from the query
//! API and from a usage report, verified by an independent JOSE implementation (Python's PyJWT)
//! against the served JWK set, and by `koogallery entitlement verify`; a frozen license's token
//! says so; tampered and expired tokens are refused; rotation keeps old tokens verifiable.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::*;

/// Python's PyJWT verifies `token` against the JWK set at `jwks_url`; its decoded claims, or the
/// exception's name.
fn pyjwt(jwks: &Value, token: &str) -> Result<Value, String> {
    let script = r#"
import json, sys, jwt
jwks = jwt.PyJWKSet.from_dict(json.loads(sys.argv[1]))
token = sys.stdin.read().strip()
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks.keys if k.key_id == kid)
try:
    print(json.dumps(jwt.decode(token, key=key.key, algorithms=["EdDSA"])))
except jwt.PyJWTError as e:
    print(json.dumps({"refused": type(e).__name__}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &jwks.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyJWT (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    match answer.get("refused") {
        Some(reason) => Err(reason.as_str().unwrap().to_owned()),
        None => Ok(answer),
    }
}

/// `koogallery entitlement verify --jwks <source>` with `token` on standard input.
fn cli_verify(source: &str, token: &str, at: Option<i64>) -> (i32, String) {
    let mut command = Command::new(binaries().join("koogallery"));
    command.args(["entitlement", "verify", "--jwks", source]);
    if let Some(at) = at {
        command.args(["--at", &at.to_string()]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

async fn usage(stack: &Stack, license: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.internal_url(&format!("/v1/licenses/{license}/usage")))
        .bearer_auth(TOKEN)
        .json(&json!({"account": "alice"}))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn entitlements_verify_independently_say_frozen_refuse_tampering_and_survive_rotation() {
    let dir = std::env::temp_dir().join(format!("entitlements-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = openssl_key(&dir, "old");
    let new = openssl_key(&dir, "new");
    let both = format!("{},{}", new.display(), old.display());
    let sim = Simulator::start();
    sim.put("PL950", "claimed").await;
    let mut stack = Stack::start(&[("LICENSING_ENTITLEMENT_KEYS", &both)]).await;

    // Without keys, the entitlement endpoints say so.
    stack.start_projector_with(&sim.url, &[("LICENSING_ENTITLEMENT_KEYS", "")]);
    let (status, body) = stack.query("/.well-known/jwks.json", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("entitlements_not_configured"))
    );
    let (status, body) = stack
        .query("/v1/licenses/PL950/entitlement", Some(TOKEN))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("entitlements_not_configured"))
    );

    // The old key alone first: a token signed by it.
    stack.projector.take();
    stack.start_projector_with(
        &sim.url,
        &[("LICENSING_ENTITLEMENT_KEYS", &old.display().to_string())],
    );
    assert_eq!(stack.request_activation("PL950").await, 202);
    let first = eventually("an active entitlement", 30, || async {
        let (status, body) = stack
            .query("/v1/licenses/PL950/entitlement", Some(TOKEN))
            .await;
        (status == 200 && body["access_mode"] == "active").then_some(body)
    })
    .await;
    let old_token = first["token"].as_str().unwrap().to_owned();

    // Rotated: the new key signs, both are published; the old token still verifies.
    stack.projector.take();
    stack.start_projector_with(&sim.url, &[]);
    let (status, jwks) = stack.query("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200, "the key set is public");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let claims = pyjwt(&jwks, &old_token).expect("PyJWT accepts the old key's token");
    assert_eq!(claims["sub"], "PL950");
    assert_eq!(claims["access_mode"], "active");
    assert_eq!(claims["kid"], jwks["keys"][1]["kid"]);
    let jwks_url = stack.query_url("/.well-known/jwks.json");
    let (code_cli, out) = cli_verify(&jwks_url, &old_token, None);
    assert_eq!(code_cli, 0, "{out}");
    assert!(out.contains("\"access_mode\": \"active\""), "{out}");

    // A usage report both records the use and answers the verdict, signed by the current key.
    let (status, answer) = usage(&stack, "PL950").await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["entitlement"]["token"].as_str().unwrap();
    let claims = pyjwt(&jwks, token).expect("PyJWT accepts the usage answer's token");
    assert_eq!(claims["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(claims["access_mode"], "active");
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 86_400, "a day, the expiry being years away");
    assert_eq!(
        answer["entitlement"]["access_until"], "2030-12-31T15:59:59Z",
        "the marketplace's expiry 20301231235959 at +08:00"
    );

    // Tampered: refused by the tool (and by PyJWT).
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    forged["exp"] = json!(exp + 365 * 86_400);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged.to_string()
        ),
        parts[2]
    );
    let (code_cli, out) = cli_verify(&jwks_url, &tampered, None);
    assert_eq!(code_cli, 1, "{out}");
    assert!(out.contains("bad signature"), "{out}");
    assert_eq!(
        pyjwt(&jwks, &tampered),
        Err("InvalidSignatureError".to_owned())
    );
    // Expired: refused at an instant past exp, by the tool reading a JWK set file too.
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let (code_cli, out) = cli_verify(&file.display().to_string(), token, Some(exp + 1));
    assert_eq!(code_cli, 1, "{out}");
    assert!(out.contains("expired"), "{out}");
    let (code_cli, out) = cli_verify(&file.display().to_string(), token, Some(exp - 1));
    assert_eq!(code_cli, 0, "{out}");

    // Frozen: the entitlement says so, and a usage report is refused with the verdict.
    assert_eq!(
        code(&stack.callback(&support::status("PL950", "FREEZE")).await),
        "000000"
    );
    let frozen = eventually("a frozen entitlement", 30, || async {
        let (_, body) = stack
            .query("/v1/licenses/PL950/entitlement", Some(TOKEN))
            .await;
        (body["access_mode"] == "frozen").then_some(body)
    })
    .await;
    let claims = pyjwt(&jwks, frozen["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_mode"], "frozen");
    assert!(claims["data_kept_until"].is_i64(), "{claims}");
    assert!(frozen["data_kept_until"].is_string(), "{frozen}");
    let (status, answer) = usage(&stack, "PL950").await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("frozen")));
    let claims = pyjwt(&jwks, answer["entitlement"]["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_mode"], "frozen");

    // Unknown licenses and missing tokens are answered as everywhere else.
    assert_eq!(
        stack
            .query("/v1/licenses/PL999/entitlement", Some(TOKEN))
            .await
            .0,
        404
    );
    assert_eq!(
        stack.query("/v1/licenses/PL950/entitlement", None).await.0,
        401
    );
    let _ = std::fs::remove_dir_all(&dir);
}
