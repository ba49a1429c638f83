//! The operator console over HTTP: forms, CSRF tokens, cookies and signed-in sessions.

/// A form body, `application/x-www-form-urlencoded`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the hidden `csrf` field of a page.
pub fn csrf_in(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF field")
        + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` header named `name`, and the whole header.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// Signs in to the operator console at `query` (`http://host:port`) with `token`: the session
/// cookie (`licensing_console=…`).
pub async fn console_session(query: &str, token: &str) -> String {
    let signed_in = console_sign_in(query, token).await;
    set_cookie(&signed_in, "licensing_console")
        .expect("a session cookie")
        .0
}

/// The console's answer to signing in with `token` through its form (redirects not followed).
pub async fn console_sign_in(query: &str, token: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{query}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let (nonce, _) = set_cookie(&form, "licensing_console_sign_in").expect("a form cookie");
    let csrf = csrf_in(&form.text().await.unwrap());
    http.post(format!("{query}/console/sign-in"))
        .header("Cookie", nonce)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[("token", token), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap()
}
